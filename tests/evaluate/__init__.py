"""Tests of onnxlrp.evaluate: known answers on the digits CNN, the measures' own invariants, the CLI."""
