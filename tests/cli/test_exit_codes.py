"""One exit-code table: ``onnxlrp.errors.EXIT_CODES``. The README's table says exactly the same, every error class's
``exit_code`` is in it, and ``onnxlrp --help`` prints it."""
from __future__ import annotations

import re

from onnxlrp import errors
from onnxlrp.cli import main
from tests.helpers import REPO

README = REPO / "README.md"


def readme_exit_codes() -> dict[int, str]:
    """The ``| exit | cause |`` table of the README as ``{code: cause}``."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("| exit | cause |")
    assert re.fullmatch(r"\|\s*-+\s*\|\s*-+\s*\|", lines[start + 1]), lines[start + 1]
    table: dict[int, str] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        code, cause = (cell.strip() for cell in line.strip().strip("|").split("|", 1))
        assert int(code) not in table, f"exit code {code} is listed twice in README.md"
        table[int(code)] = cause
    return table


def test_readme_table_equals_exit_codes():
    assert readme_exit_codes() == errors.EXIT_CODES


def test_every_error_class_has_its_exit_code_in_the_table():
    defined = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, BaseException)
               and not issubclass(v, Warning)]
    assert all(issubclass(cls, errors.OnnxLrpError) for cls in defined)
    classes = set(defined) | set(errors.error_classes())  # and any subclass defined elsewhere
    missing = {cls.__name__: cls.exit_code for cls in classes if cls.exit_code not in errors.EXIT_CODES}
    assert missing == {}
    assert errors.INTERRUPTED_EXIT in errors.EXIT_CODES and 0 in errors.EXIT_CODES


def test_help_lists_every_exit_code(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = {int(m) for m in re.findall(r"^  (\d+) +\S", out.split("exit codes:", 1)[1], re.MULTILINE)}
    assert listed == set(errors.EXIT_CODES)
