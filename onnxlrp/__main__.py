"""``python -m onnxlrp``: the same command line as the ``onnxlrp`` script."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
