"""Auditing a deployed model over a whole dataset: ``onnxlrp audit`` and ``onnxlrp diff`` as a library.

- :class:`~.dataset.Dataset`: folders, list files, ``.npy``/``.npz`` shards and Parquet, read a range of rows at a
  time;
- :mod:`.spray`: spectral relevance analysis (SpRAy, Lapuschkin et al. 2019) of a class's maps;
- :mod:`.maps`: relevance maps summed over channels and resized to a fixed size.

Needs the ``audit`` extra (pyarrow, scikit-learn) for Parquet and SpRAy; ``--engine ray`` the ``ray`` extra.
"""
from __future__ import annotations

from .dataset import Batch, Dataset

__all__ = ["Batch", "Dataset"]
