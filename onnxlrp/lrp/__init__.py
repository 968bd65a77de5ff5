"""LRP policy, independent of ONNX: the rule algebra (:mod:`.core`), the rule catalogue (:mod:`.rules`,
:mod:`.transformer`, :mod:`.sign`, :mod:`.rap`), presets (:mod:`.presets`) and rule assignment (:mod:`.assign`)."""
