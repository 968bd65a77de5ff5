"""The engine: ONNX graph → relevance path → forward pass → backward walk, kernel by kernel.

It knows no method, no LRP policy and no screen. Its public object is :class:`~onnxlrp.engine.session.Session`;
kernels are written against :mod:`onnxlrp.engine.kernel` and registered with
:func:`onnxlrp.engine.registry.register_kernel`.
"""
