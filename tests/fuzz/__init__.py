"""Property-based fuzz tests (hypothesis): malformed models, hostile API inputs and generated command lines end in a
result or in one of onnxlrp's own errors, never a bare exception, a hang or a NaN/inf map (issue 15)."""
