"""Spectral relevance analysis (SpRAy): the strategies a model uses for one class, found by clustering its maps.

Lapuschkin et al. 2019, "Unmasking Clever Hans predictors and assessing what machines really learn" (Nat. Commun.
10:1096), with the defaults of the authors' CoRelAy pipeline (``SpectralClustering``: Euclidean distances, a
symmetric binary 10-nearest-neighbour graph, the symmetric normalised Laplacian, its eigenvectors as the spectral
embedding, k-means on it, t-SNE of it for the picture). For ``N`` relevance maps ``R_n`` (``N, H, W``, channels
already summed, :func:`.maps.pixel_maps`):

1. **Resample** to ``size x size`` by area averaging (:func:`.maps.downsample`; block means when ``H``, ``W`` are
   multiples of ``size``).
2. **Normalise** each map by its total absolute relevance, ``x_n = R_n / sum_p |R_n[p]|`` (an all-zero map stays
   zero), so maps of confident and unsure predictions compare by where the relevance lies, not by how much there
   is. (CoRelAy divides by the signed sum, which is near zero for maps with as much negative as positive
   relevance; ``sum |R|`` is the same for non-negative maps and safe for signed ones.)
3. **Graph**: ``K[n, m] = 1`` when ``x_m`` is one of the ``k = neighbours`` nearest maps to ``x_n`` (Euclidean,
   ``n`` itself excluded, ties to the lower index); the affinity is the symmetric ``A = (K + K^T) / 2``.
4. **Laplacian** ``L = I - D^-1/2 A D^-1/2`` with degrees ``D = diag(A 1)`` (each at least ``k / 2``). Its
   eigenvalues ``0 = l_1 <= l_2 <= ... <= 2``: ``l_c = 0`` for each connected component, small ``l`` for groups
   joined by few edges. The smallest ``E = min(max(max_clusters + 1, 32), N)`` eigenpairs are computed (dense
   ``numpy.linalg.eigh`` up to :data:`DENSE_LIMIT` maps, else ARPACK ``eigsh`` on ``D^-1/2 A D^-1/2`` with a
   seeded start vector).
5. **Connected components first**: when the graph falls apart into several components (several zero eigenvalues),
   each component is a group of maps no other map is near: a strategy of its own, which k-means on the whole
   spectrum could still cut in two. Each component is then clustered on its own graph by steps 3 to 6 (one cluster
   when it has at most ``neighbours + 1`` maps or its maps are alike), so a component is never split across
   clusters, and ``eigengap`` reports the gap after the components' zero eigenvalues. Otherwise:
   **number of clusters** by the eigengap: ``k* = argmax_{1 <= j <= m} (l_{j+1} - l_j)`` over the first
   ``m + 1`` eigenvalues, ``m = min(max_clusters, N - 1)``, the first ``j`` on ties; ``k* = 1`` when the largest
   gap is the first one (a homogeneous class).
6. **Clusters**: k-means (``k*`` clusters, 10 seeded restarts) on the rows of the first ``k*`` eigenvectors, each row
   scaled to unit length (Ng, Jordan and Weiss 2001); then two clusters whose mean maps lie closer than the larger
   of their spreads are merged, closest pair first (:func:`merge_inseparable`: the eigengap can ask for a cut
   through one tight group of maps, whose halves share their mean within their own scatter).
7. **2-D embedding**: t-SNE (seeded, PCA start, perplexity ``min(30, (N - 1) / 3)``) of the row-normalised first
   ``E`` eigenvectors, as CoRelAy does; or, with ``embedding="spectral"`` (no t-SNE: for large ``N``), the
   Laplacian-eigenmap coordinates ``D^-1/2 v_2``, ``D^-1/2 v_3``.

**Distinctness** of a cluster ``c`` with mean map ``mu_c`` (the mean of its normalised maps), the mean ``mu_rest`` of
all other maps and its spread ``sigma_c = sqrt(mean_{n in c} ||x_n - mu_c||^2)``::

    distinctness_c = s_c / (s_c + sigma_c),   s_c = ||mu_c - mu_rest||

in ``[0, 1)``: 0 when the cluster's mean map is that of the other maps, towards 1 for a tight cluster far from
them (a Clever Hans strategy: many maps with their relevance in one place no other map has). One cluster alone
(no rest) has distinctness 0. Clusters are ranked by distinctness, largest first (ties: the larger cluster first),
and numbered in that order: ``labels == i`` are the members of ``clusters[i]``.

Degenerate input: with ``N <= neighbours + 1`` maps the k-NN graph is complete, and maps that are all equal after
normalisation (all zero, one map repeated) have no neighbour order; both give one cluster, the eigenvalues of the
complete graph (``0`` and ``N / (N - 1)``), a PCA 2-D embedding, and a :attr:`SprayResult.note` that says why
("equal": within :data:`ALIKE` of the largest normalised value, float32 rounding).
NaN or inf in the maps raise :class:`~onnxlrp.errors.NonFiniteError`. No maps give an empty result.

Deterministic for a seed: the graph has no randomness, k-means, ARPACK and t-SNE are seeded. Needs scikit-learn
(the ``audit`` extra).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import BackendUnavailableError, InputShapeError, NonFiniteError, UsageError
from .maps import downsample

#: up to this many maps the Laplacian is decomposed densely (exact, every eigenvalue); above, ARPACK
DENSE_LIMIT = 500
#: eigenvectors kept for the t-SNE picture (CoRelAy's ``EigenDecomposition(n_eigval=32)``)
EMBEDDING_EIGENVECTORS = 32
#: entries of the distance matrix computed at a time (2^20 float64: 8 MiB, and as much again for its argsort)
DISTANCE_BUDGET = 1 << 20
EMBEDDINGS = ("tsne", "spectral")
#: normalised maps closer than this share of the largest value count as one map (float32 rounding is ~6e-8)
ALIKE = 1e-6


@dataclass
class Cluster:
    """One strategy: ``members`` index the maps given to :func:`spray`; ``mean_map`` is the mean of their
    normalised maps (``size x size``, each map scaled to ``sum |R| = 1``); ``distinctness`` as the module says."""

    index: int
    size: int
    members: np.ndarray
    mean_map: np.ndarray
    distinctness: float


@dataclass
class SprayResult:
    """``labels`` (N,) the cluster of each map (``clusters[labels[n]]``); ``eigenvalues`` the smallest
    ``max_clusters + 1`` of the normalised Laplacian, ascending; ``eigengap`` the gap that chose ``n_clusters``;
    ``embedding`` (N, 2) the picture's coordinates; ``clusters`` ranked most distinct first; ``neighbours`` the
    ``k`` of the graph actually used (``N - 1`` for a complete graph); ``note`` says why a degenerate input got
    one cluster (empty otherwise)."""

    labels: np.ndarray
    n_clusters: int
    eigenvalues: np.ndarray
    eigengap: float
    embedding: np.ndarray
    clusters: list[Cluster] = field(default_factory=list)
    neighbours: int = 0
    note: str = ""


def spray(maps: np.ndarray, *, size: int = 32, neighbours: int = 10, max_clusters: int = 8, seed: int = 0,
          embedding: str = "tsne") -> SprayResult:
    """Cluster ``maps`` (N, H, W) into strategies (module docstring: the steps, the distinctness, the degenerate
    cases)."""
    _check_options(size, neighbours, max_clusters, embedding)
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise InputShapeError(f"SpRAy takes maps of shape (N, H, W); got shape {tuple(maps.shape)} "
                              "(onnxlrp.audit.maps.pixel_maps sums an input-shaped relevance's channels)")
    if maps.dtype.kind not in "biuf":
        raise InputShapeError(f"SpRAy takes real-valued maps; got dtype {maps.dtype}")
    if not np.isfinite(maps).all():
        raise NonFiniteError(f"{int((~np.isfinite(maps)).any(axis=(1, 2)).sum())} of the {len(maps)} maps contain "
                             "NaN or inf; drop those samples before SpRAy")
    n = len(maps)
    if n == 0:
        return SprayResult(np.zeros(0, np.int64), 0, np.zeros(0), 0.0, np.zeros((0, 2)), [], 0, "no maps")
    x = normalise(downsample(maps, size).reshape(n, -1).astype(np.float64))

    if n <= neighbours + 1 or all_alike(x):
        why = (f"{n} maps, fewer than neighbours + 2 = {neighbours + 2}" if n <= neighbours + 1
               else "every map is the same after normalisation")
        return _one_cluster(x, size, max_clusters, f"one cluster: {why} (the neighbour graph is complete)")

    sklearn = _require_sklearn()
    affinity = knn_affinity(x, neighbours)
    eigenvalues, vectors, degree = laplacian_eigen(affinity, min(max(max_clusters + 1, EMBEDDING_EIGENVECTORS), n),
                                                   seed)
    first = eigenvalues[:min(max_clusters, n - 1) + 1]
    gaps = np.diff(first)
    components, component = connected_components(affinity)
    if components > 1:  # each component is clustered on its own graph, never split across clusters
        labels = np.zeros(n, dtype=np.int64)
        for c in range(components):
            members = np.flatnonzero(component == c)
            labels[members] = labels.max() + 1 + _partition(x[members], neighbours, max_clusters, seed, sklearn)
        k = min(components, len(gaps))
    else:
        k = int(np.argmax(gaps)) + 1
        labels = np.zeros(n, dtype=np.int64) if k == 1 else merge_inseparable(
            x, _kmeans(sklearn, _unit_rows(vectors[:, :k]), k, seed))
    if embedding == "tsne":
        picture = _tsne(sklearn, _unit_rows(vectors), seed)
    else:
        picture = vectors[:, 1:3] / np.sqrt(degree)[:, None]
    labels, clusters = _ranked_clusters(x, labels, size)
    return SprayResult(labels, len(clusters), first, float(gaps[k - 1]), _fixed_signs(picture), clusters,
                       neighbours, "")


def connected_components(affinity) -> tuple[int, np.ndarray]:
    """``(count, component of each map)`` of the k-NN graph (scipy's ``connected_components``, undirected)."""
    from scipy.sparse.csgraph import connected_components as components
    count, labels = components(affinity, directed=False)
    return int(count), labels


def _partition(x: np.ndarray, neighbours: int, max_clusters: int, seed: int, sklearn) -> np.ndarray:
    """Cluster labels ``0 .. k-1`` of the normalised maps ``x`` of one connected component: steps 3 to 6 on the
    component's own graph (one cluster when it is too small for one or its maps are alike)."""
    n = len(x)
    if n <= neighbours + 1 or all_alike(x):
        return np.zeros(n, dtype=np.int64)
    affinity = knn_affinity(x, neighbours)
    count, component = connected_components(affinity)
    if count > 1:
        labels = np.zeros(n, dtype=np.int64)
        for c in range(count):
            members = np.flatnonzero(component == c)
            labels[members] = labels.max() + 1 + _partition(x[members], neighbours, max_clusters, seed, sklearn)
        return np.unique(labels, return_inverse=True)[1]
    eigenvalues, vectors, _ = laplacian_eigen(affinity, min(max_clusters + 1, n), seed)
    k = int(np.argmax(np.diff(eigenvalues[:min(max_clusters, n - 1) + 1]))) + 1
    return np.zeros(n, dtype=np.int64) if k == 1 else merge_inseparable(
        x, _kmeans(sklearn, _unit_rows(vectors[:, :k]), k, seed))


def merge_inseparable(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels ``0 .. k-1`` after merging, closest pair first, every two clusters that are not separated: the
    distance of their mean maps is below the larger of their spreads (``sigma``, the root-mean-square distance of a
    cluster's maps from its mean). k-means cuts wherever the eigengap asks for a cut, also through one tight group
    of maps (a single strategy) whose two halves then share their mean within their own scatter."""
    labels = np.unique(labels, return_inverse=True)[1]
    while labels.max() > 0:
        k = int(labels.max()) + 1
        counts = np.bincount(labels, minlength=k)
        means = np.zeros((k, x.shape[1]))
        np.add.at(means, labels, x)
        means /= counts[:, None]
        spread = np.sqrt(np.bincount(labels, weights=((x - means[labels]) ** 2).sum(axis=1), minlength=k) / counts)
        distance = np.sqrt(((means[:, None, :] - means[None, :, :]) ** 2).sum(axis=2))
        scale = np.maximum(spread[:, None], spread[None, :])
        ratio = np.divide(distance, scale, out=np.full_like(distance, np.inf), where=scale > 0)
        np.fill_diagonal(ratio, np.inf)
        a, b = np.unravel_index(int(np.argmin(ratio)), ratio.shape)
        if ratio[a, b] >= 1.0:
            break
        labels = np.unique(np.where(labels == b, a, labels), return_inverse=True)[1]
    return labels


def normalise(flat: np.ndarray) -> np.ndarray:
    """Each row divided by the sum of its absolute values (all-zero rows stay zero), in place: ``flat`` is the
    float64 copy :func:`spray` made, and the audit's memory is bounded by the largest class's maps."""
    total = np.abs(flat).sum(axis=1, keepdims=True)
    np.divide(flat, total, out=flat, where=total > 0)
    return flat


def all_alike(x: np.ndarray) -> bool:
    """Whether every normalised map equals the first within :data:`ALIKE` of the largest ``|x|`` (the maps are
    float32 after resampling, so a map and a scaled copy of it differ by rounding only)."""
    peak = np.abs(x).max()
    return bool(np.abs(x - x[0]).max() <= ALIKE * peak)


def knn_neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """``(N, k)`` indices of each row's ``k`` nearest other rows (squared Euclidean distance, computed in chunks
    as ``|a|^2 + |b|^2 - 2 a.b``; ties go to the lower index)."""
    n = len(x)
    squared = (x * x).sum(axis=1)
    found = np.empty((n, k), dtype=np.int64)
    chunk = max(1, DISTANCE_BUDGET // n)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        distance = squared[start:stop, None] + squared[None, :] - 2.0 * (x[start:stop] @ x.T)
        np.maximum(distance, 0.0, out=distance)
        distance[np.arange(stop - start), np.arange(start, stop)] = np.inf
        found[start:stop] = np.argsort(distance, axis=1, kind="stable")[:, :k]
    return found


def knn_affinity(x: np.ndarray, k: int):
    """The symmetric binary k-nearest-neighbour affinity ``(K + K^T) / 2`` as a scipy CSR matrix."""
    from scipy import sparse
    n = len(x)
    rows = np.repeat(np.arange(n), k)
    directed = sparse.csr_matrix((np.ones(n * k), (rows, knn_neighbours(x, k).ravel())), shape=(n, n))
    return ((directed + directed.T) / 2.0).tocsr()


def laplacian_eigen(affinity, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(eigenvalues ascending (count,), eigenvectors (N, count), degrees (N,))`` of the symmetric normalised
    Laplacian ``I - D^-1/2 A D^-1/2`` of ``affinity`` (eigenvalues clipped to ``[0, 2]``)."""
    from scipy import sparse
    from scipy.sparse.linalg import eigsh
    n = affinity.shape[0]
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    scale = sparse.diags(1.0 / np.sqrt(degree))
    adjacency = (scale @ affinity @ scale).tocsr()
    if n <= DENSE_LIMIT or count >= n - 1:
        values, vectors = np.linalg.eigh(np.eye(n) - adjacency.toarray())
        values, vectors = values[:count], vectors[:, :count]
    else:
        start = np.random.default_rng(seed).standard_normal(n)
        top, vectors = eigsh(adjacency, k=count, which="LA", v0=start)
        order = np.argsort(-top, kind="stable")
        values, vectors = 1.0 - top[order], vectors[:, order]
    return np.clip(values, 0.0, 2.0), vectors, degree


def _kmeans(sklearn, points: np.ndarray, k: int, seed: int) -> np.ndarray:
    with warnings.catch_warnings():  # fewer distinct points than k: k-means says so; the empty labels are dropped
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        return sklearn.cluster.KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(points)


def _tsne(sklearn, points: np.ndarray, seed: int) -> np.ndarray:
    perplexity = min(30.0, (len(points) - 1) / 3.0)
    return sklearn.manifold.TSNE(n_components=2, perplexity=perplexity, init="pca",
                                 random_state=seed).fit_transform(points)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norm, out=np.zeros_like(vectors), where=norm > 0)


def _fixed_signs(points: np.ndarray) -> np.ndarray:
    """``points`` with each column's sign chosen so that its largest-magnitude entry is positive (eigenvector and
    PCA signs are arbitrary; this makes the picture the same on every platform)."""
    points = np.asarray(points, dtype=np.float64)
    if points.size == 0:
        return points
    peak = points[np.argmax(np.abs(points), axis=0), np.arange(points.shape[1])]
    return points * np.where(peak < 0, -1.0, 1.0)


def _ranked_clusters(x: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, list[Cluster]]:
    """Labels renumbered by rank (most distinct first) and the :class:`Cluster` of each."""
    used, labels = np.unique(labels, return_inverse=True)
    n, k = len(x), len(used)
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    means = sums / counts[:, None]
    spread = np.sqrt(np.bincount(labels, weights=((x - means[labels]) ** 2).sum(axis=1), minlength=k) / counts)
    rest_counts = n - counts
    rest = np.divide(sums.sum(axis=0)[None] - sums, rest_counts[:, None], out=np.zeros_like(sums),
                     where=rest_counts[:, None] > 0)
    separation = np.where(rest_counts > 0, np.linalg.norm(means - rest, axis=1), 0.0)
    total = separation + spread
    distinctness = np.divide(separation, total, out=np.zeros(k), where=total > 0)
    order = np.lexsort((np.arange(k), -counts, -distinctness))
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    labels = rank[labels]
    clusters = [Cluster(index=i, size=int(counts[c]), members=np.flatnonzero(labels == i),
                        mean_map=means[c].reshape(size, size).astype(np.float32),
                        distinctness=float(distinctness[c]))
                for i, c in enumerate(order)]
    return labels, clusters


def _one_cluster(x: np.ndarray, size: int, max_clusters: int, note: str) -> SprayResult:
    """Every map in one cluster (the complete graph's eigenvalues, a PCA picture)."""
    n = len(x)
    count = min(max_clusters, n - 1) + 1
    eigenvalues = np.r_[0.0, np.full(count - 1, n / (n - 1.0))] if n > 1 else np.zeros(1)
    centred = x - x.mean(axis=0)
    if n > 1 and centred.any():
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        picture = np.zeros((n, 2))
        width = min(2, len(s))
        picture[:, :width] = u[:, :width] * s[:width]
    else:
        picture = np.zeros((n, 2))
    labels, clusters = _ranked_clusters(x, np.zeros(n, dtype=np.int64), size)
    gap = float(eigenvalues[1] - eigenvalues[0]) if n > 1 else 0.0
    return SprayResult(labels, 1, eigenvalues, gap, _fixed_signs(picture), clusters, max(n - 1, 0), note)


def _check_options(size, neighbours, max_clusters, embedding) -> None:
    for name, value in (("size", size), ("neighbours", neighbours), ("max_clusters", max_clusters)):
        if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
            raise UsageError(f"SpRAy's {name} must be a positive integer; got {value!r}")
    if embedding not in EMBEDDINGS:
        raise UsageError(f"SpRAy's embedding must be one of {', '.join(map(repr, EMBEDDINGS))}; got {embedding!r}")


def _require_sklearn():
    """scikit-learn's modules SpRAy uses, or :class:`BackendUnavailableError` saying how to install them."""
    try:
        import scipy.sparse  # noqa: F401  (scikit-learn's own dependency)
        import sklearn.cluster
        import sklearn.exceptions
        import sklearn.manifold
    except ImportError as exc:
        raise BackendUnavailableError(f"SpRAy needs scikit-learn ({exc}); pip install 'onnxlrp[audit]'") from None
    return sklearn
