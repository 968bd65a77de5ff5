"""Auditing a deployed model over a whole dataset: ``onnxlrp audit`` and ``onnxlrp diff`` as a library.

- :class:`~.dataset.Dataset`: folders (class subfolders as labels), list files, ``.npy``/``.npz`` shards and
  Parquet, read a range of rows at a time;
- :func:`~.run.run_audit` with an :class:`~.compute.AuditPlan`: shards explained on the local engine or Ray Data and
  committed atomically (resumable), SpRAy per class, ``audit.parquet``; :class:`~.store.AuditMaps` reads the stored
  maps by row;
- :func:`onnxlrp.audit.spray.spray`: spectral relevance analysis (SpRAy, Lapuschkin et al. 2019) of a class's
  maps;
- :mod:`.maps`: relevance maps summed over channels and resized to a fixed size;
- :func:`~.drift.compare`: explanation drift between two exports of one model (``onnxlrp diff``).

Needs the ``audit`` extra (pyarrow, scikit-learn) for Parquet and SpRAy; ``--engine ray`` the ``ray`` extra.

>>> from onnxlrp.audit import AuditPlan, MethodSpec, run_audit, AuditMaps
>>> plan = AuditPlan("model.onnx", ("images/",), (MethodSpec("epsilon_plus", {}, {}),))
>>> result = run_audit(plan, "audit-out", spray={})
>>> AuditMaps("audit-out").get("epsilon_plus", [0, 1, 2]).shape
"""
from __future__ import annotations

from .compute import AuditPlan, MethodSpec, ShardWorker
from .dataset import Batch, Dataset
from .drift import DriftBatch, DriftExample, LeastSimilar, compare, summarize, top_k_count, top_k_overlap
from .maps import downsample, pixel_maps
from .run import AuditResult, run_audit
from .spray import Cluster, SprayResult  # the function is onnxlrp.audit.spray.spray (the module keeps its name)
from .store import AuditMaps

__all__ = ["AuditMaps", "AuditPlan", "AuditResult", "Batch", "Cluster", "Dataset", "DriftBatch", "DriftExample",
           "LeastSimilar", "MethodSpec", "ShardWorker", "SprayResult", "compare", "downsample", "pixel_maps",
           "run_audit", "summarize", "top_k_count", "top_k_overlap"]
