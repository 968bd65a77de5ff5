"""Running an audit: shards on an engine, committed as they arrive, then SpRAy per class and the final table.

:func:`run_audit` opens the model and the dataset, writes (or checks, on ``resume``) the manifest, computes the
shards not yet committed on the chosen engine, and finishes: SpRAy (:mod:`.strategies`) per method and class over
the stored maps, then ``audit.parquet``. Engines:

- ``"local"``: this process, one shard after another (memory: one shard's inputs, maps and rows);
- ``"ray"``: Ray Data, ``map_batches`` over the pending shard indices with an actor pool of ``num_workers`` actors,
  each holding one :class:`~.compute.ShardWorker` (one Explainer); results stream back to this process, which
  commits them, so the files are the same whichever engine computed them. An actor that dies stops the run
  (``max_restarts=0``); ``--resume`` then computes what is missing. ``address`` joins an existing cluster
  (``ray start --head`` or a Kubernetes/KubeRay cluster; the data paths must be readable from the workers), else a
  local cluster of ``num_workers`` CPUs is started and stopped.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import BackendUnavailableError
from .compute import AuditPlan, ShardWorker
from .store import AuditMaps, AuditStore

ENGINES = ("local", "ray")


@dataclass
class AuditResult:
    """What a run did: the folder, rows, shards computed now and before, the strategies found, and timings."""

    out: Path
    rows: int
    shards_computed: int
    shards_resumed: int
    strategies: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    class_names: list | None = None
    #: the explained input's ``(name, shape, dtype)``: what reading the dataset again needs, without the model
    input: tuple | None = None


def file_digest(path: str) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(plan: AuditPlan, worker: ShardWorker) -> dict:
    """What a resumed run must match: the model's and data's fingerprints and every option that changes a row."""
    prep = plan.dataset_options.get("prep")
    return {
        "model_sha256": file_digest(plan.model), "data": worker.dataset.fingerprint(),
        "methods": [{"name": m.name, "params": m.full} for m in plan.methods],
        "metrics": [{"name": n, "params": p} for n, p in plan.metrics],
        "explainer": {k: v for k, v in plan.explainer_options.items() if k != "memory_budget"},
        "preprocessing": prep.to_dict() if prep is not None else None,
        "labels": plan.dataset_options.get("labels"), "class_names": worker.dataset.class_names,
        "top_k": plan.top_k, "map_size": plan.map_size, "shard_size": plan.shard_size, "seed": plan.seed,
        "target": plan.target,
        "rows_per_batch": worker.rows_per_batch, "onnxlrp": __version__,
    }


def run_audit(plan: AuditPlan, out, *, resume: bool = False, engine: str = "local", num_workers: int = 2,
              address: str | None = None, spray: dict | None = None,
              on_progress: Callable[[int, int], None] | None = None) -> AuditResult:
    """Audit ``plan`` into ``out`` (see the module docstring). ``spray`` holds :func:`.strategies.find_strategies`'s
    options (``None``: no SpRAy); ``on_progress(rows, total)`` is called once the data is listed, with the rows a
    resumed run already had, then as each shard is committed."""
    t0 = time.monotonic()
    worker = ShardWorker(plan)
    plan = replace(plan, batch_size=worker.rows_per_batch)  # every engine explains the same batches
    worker.plan = plan
    started = connect_ray(num_workers, address) if engine == "ray" else False  # before any file is written
    try:
        return _run(plan, worker, out, resume, engine, num_workers, spray, on_progress, t0)
    finally:
        if started:
            import ray
            ray.shutdown()


def _run(plan, worker, out, resume, engine, num_workers, spray, on_progress, t0) -> AuditResult:
    store = AuditStore(Path(out), plan, manifest(plan, worker), len(worker.dataset), resume)
    done, pending = store.done(), store.pending()
    if on_progress is not None:
        on_progress(sum(store.shard_rows(k) for k in done), store.count)

    def commit(result) -> None:
        store.commit(result)
        if on_progress is not None:
            on_progress(store.shard_rows(result.index), store.count)

    t1 = time.monotonic()
    if engine == "ray":
        run_on_ray(plan, pending, commit, num_workers=num_workers)
    else:
        for index in pending:
            commit(worker(index))
    t2 = time.monotonic()
    strategies, clusters = {}, {}
    if spray is not None:
        from .strategies import find_strategies
        strategies, clusters = find_strategies(store, AuditMaps(store.out), plan, **spray)
    t3 = time.monotonic()
    store.finish(clusters)
    seconds = {"open": t1 - t0, "explain": t2 - t1, "spray": t3 - t2, "table": time.monotonic() - t3}
    ex = worker.explainer
    return AuditResult(store.out, store.count, len(pending), len(done), strategies, seconds,
                       worker.dataset.class_names, (ex.input_name, tuple(ex.input_shape), ex.input_dtype))


class RayShardActor:
    """A Ray Data actor: one :class:`ShardWorker` (one Explainer), turning a batch of shard indices into pickled
    :class:`~.compute.ShardResult` objects."""

    def __init__(self, plan: AuditPlan):
        self.worker = ShardWorker(plan)

    def __call__(self, batch: dict) -> dict:
        results = [pickle.dumps(self.worker(int(k)), protocol=pickle.HIGHEST_PROTOCOL) for k in batch["shard"]]
        return {"shard": np.asarray(batch["shard"]), "result": np.asarray(results, dtype=object)}


def blas_threads() -> dict[str, str]:
    """The BLAS/OpenMP thread count of this process, for the actors' environment.

    Ray starts an actor that asks for one CPU with ``OMP_NUM_THREADS=1``; OpenBLAS then splits some products
    differently and float32 maps differ in their last bits from the local engine's. Giving the actors this
    process's count (its variables, else the CPUs it may run on, OpenBLAS's own default) makes them compute what
    the local engine computes, bit for bit, on the same kind of machine.
    """
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    given = next((os.environ[n] for n in names if os.environ.get(n)), None)
    count = given or str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return {n: os.environ.get(n, count) for n in names}


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a ``HOST:PORT`` (or ``ray://HOST:PORT``) that nothing answers on: Ray itself retries such an
    address for minutes. ``auto`` and other forms are left to Ray."""
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BackendUnavailableError(f"cannot join the Ray cluster at {address!r}: nothing answers on {host}:{port} "
                                      f"({exc.strerror or exc}); start one with `ray start --head`, or drop --address "
                                      "for a local one") from None


def connect_ray(num_workers: int, address: str | None) -> bool:
    """Join the cluster at ``address``, or start a local one of ``num_workers`` CPUs; ``True`` when this call
    started or joined it (and should shut it down), ``False`` when Ray was already initialised in this process."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the part the audit uses
    except ImportError:
        raise BackendUnavailableError("--engine ray needs Ray: pip install 'onnxlrp[ray]'") from None
    for name in ("ray", "ray.data"):  # Ray's progress lines and notices would bury onnxlrp's own output
        logging.getLogger(name).setLevel(logging.ERROR)
    if ray.is_initialized():
        return False
    options = {"address": address} if address else {"num_cpus": num_workers}
    if address:
        check_reachable(address)
    try:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailableError(f"cannot join the Ray cluster at {address!r}: {reason} (start one with "
                                      "`ray start --head`, or drop --address for a local one)") from None
    return True


def run_on_ray(plan: AuditPlan, pending: list[int], commit: Callable, *, num_workers: int) -> None:
    """Compute ``pending`` shards on Ray Data (already connected: :func:`connect_ray`) and ``commit`` each result in
    this process as it arrives."""
    if not pending:
        return
    import ray.data
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    shards = ray.data.from_items([{"shard": k} for k in pending], override_num_blocks=len(pending))
    with warnings.catch_warnings():  # max_restarts has no named parameter yet: Ray warns of its **kwargs
        warnings.simplefilter("ignore", DeprecationWarning)
        results = shards.map_batches(RayShardActor, fn_constructor_args=(plan,), batch_size=1,
                                     compute=ray.data.ActorPoolStrategy(size=num_workers), num_cpus=1,
                                     runtime_env={"env_vars": blas_threads()}, max_restarts=0)
    for batch in results.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=1):
        for payload in batch["result"]:
            commit(pickle.loads(payload))
