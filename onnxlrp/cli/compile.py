"""``onnxlrp compile``: a method's backward pass written into the model (:func:`onnxlrp.compiler.compile`)."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import OutputDirError
from .args import one_method


def cmd_compile(args: argparse.Namespace) -> int:
    from ..compiler import compile, save
    chosen = one_method(args, "compile")
    compiled = compile(args.model, chosen.name, input_name=args.input_name, output_name=args.output_name,
                       explain_softmax=args.explain_softmax, **chosen.params)
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise OutputDirError(f"cannot write {args.output!r}: its folder {folder!r} is missing or not writable")
    partial = args.output + ".partial"
    save(compiled, partial, os.path.basename(args.output) + ".data")
    os.replace(partial, args.output)
    inputs = ", ".join(i.name for i in compiled.graph.input)
    outputs = ", ".join(o.name for o in compiled.graph.output)
    print(f"wrote {args.output}: {chosen.name} compiled in ({len(compiled.graph.node)} nodes); inputs {inputs}; "
          f"outputs {outputs}", file=sys.stdout)
    return 0
