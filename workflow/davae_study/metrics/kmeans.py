"""Hartigan–Wong k-means, the algorithm R's ``kmeans()`` runs by default (Tran et al.'s ARI calls it).

Algorithm AS 136 (Hartigan & Wong 1979, *Applied Statistics* 28:100), written here from the published
description. Starting from given centres, every point is assigned to its closest and second-closest centre;
then an *optimal-transfer* stage and a *quick-transfer* stage alternate. A point moves from its cluster
``L1`` (``n1`` points) to ``L2`` (``n2``) when that lowers the within-cluster sum of squares, i.e. when
``n2 / (n2 + 1) · d²(x, c2) < n1 / (n1 − 1) · d²(x, c1)``, and both centres are updated at once (Lloyd's
algorithm instead reassigns all points to the nearest centre, then moves the centres). The optimal-transfer
stage searches all clusters, restricted to a "live set" of clusters updated in the last pass over the
points; the quick-transfer stage only tries each point's second-closest cluster, until a full pass makes
no transfer. Its fixed points are a subset of Lloyd's: a start with two centres in one elongated cluster,
stable for Lloyd, is often left by single-point transfers.

:func:`hartigan_wong` matches R's ``kmeans(x, centers = <matrix>, algorithm = "Hartigan-Wong")`` cluster
for cluster on the fixtures in ``tests/data/kmeans_hw_r.json`` (made by ``tests/data/kmeans_hw_r.R``).
"""

from __future__ import annotations

import numba
import numpy as np

_BIG = 1.0e30


@numba.njit(cache=True)
def _sqdist(x: np.ndarray, i: int, c: np.ndarray, l: int, bound: float = np.inf) -> float:
    """Squared distance of point ``i`` to centre ``l``, summed until it reaches ``bound`` (then a partial
    sum ≥ ``bound`` is returned: all the callers need to know is that it is not below)."""
    s = 0.0
    for j in range(x.shape[1]):
        d = x[i, j] - c[l, j]
        s += d * d
        if s >= bound:
            break
    return s


@numba.njit(cache=True)
def _cluster_means(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (the means of their points) and sizes of the clusters ``labels`` (an empty one: centre 0)."""
    c = np.zeros((k, x.shape[1]))
    nc = np.zeros(k, dtype=np.int64)
    for i in range(x.shape[0]):
        nc[labels[i]] += 1
        c[labels[i], :] += x[i, :]
    for l in range(k):
        if nc[l] > 0:
            c[l, :] /= nc[l]
    return c, nc


@numba.njit(cache=True)
def _transfer(x, c, i, l1, l2, nc, an1, an2):
    """Move point ``i`` from cluster ``l1`` to ``l2``: both centres, sizes and size factors."""
    al1 = float(nc[l1])
    alw = al1 - 1.0
    al2 = float(nc[l2])
    alt = al2 + 1.0
    for j in range(x.shape[1]):
        c[l1, j] = (c[l1, j] * al1 - x[i, j]) / alw
        c[l2, j] = (c[l2, j] * al2 + x[i, j]) / alt
    nc[l1] -= 1
    nc[l2] += 1
    an2[l1] = alw / al1
    an1[l1] = _BIG if alw <= 1.0 else alw / (alw - 1.0)
    an1[l2] = alt / al2
    an2[l2] = alt / (alt + 1.0)


@numba.njit(cache=True)
def _optimal_transfer(x, c, ic1, ic2, nc, an1, an2, ncp, d, itran, live, indx):
    """One optimal-transfer pass over the points; returns the updated ``indx`` (steps since the last
    transfer). ``ncp[l]``: the step at which cluster ``l`` was last updated (0: not in this pass)."""
    m = x.shape[0]
    k = c.shape[0]
    for l in range(k):
        if itran[l] == 1:
            live[l] = m + 1  # 1-based steps, as in the published algorithm
    for i0 in range(m):
        step = i0 + 1
        indx += 1
        l1 = ic1[i0]
        if nc[l1] != 1:
            if ncp[l1] != 0:  # l1 changed in this stage: its distance term is stale
                d[i0] = _sqdist(x, i0, c, l1) * an1[l1]
            ll = ic2[i0]
            l2 = ll
            r2 = _sqdist(x, i0, c, ll) * an2[ll]
            for l in range(k):
                # with l1 outside the live set, only clusters in the live set can receive the point
                if (step >= live[l1] and step >= live[l]) or l == l1 or l == ll:
                    continue
                rr = r2 / an2[l]
                dc = _sqdist(x, i0, c, l, rr)
                if dc < rr:
                    r2 = dc * an2[l]
                    l2 = l
            if r2 >= d[i0]:
                ic2[i0] = l2  # no transfer: l2 is the new second-closest
            else:
                indx = 0
                live[l1] = m + step
                live[l2] = m + step
                ncp[l1] = step
                ncp[l2] = step
                _transfer(x, c, i0, l1, l2, nc, an1, an2)
                ic1[i0] = l2
                ic2[i0] = l1
        if indx == m:
            return indx
    for l in range(k):
        itran[l] = 0
        live[l] -= m
    return indx


@numba.njit(cache=True)
def _quick_transfer(x, c, ic1, ic2, nc, an1, an2, ncp, d, itran, indx, max_steps):
    """Quick-transfer stage: each point against its second-closest cluster only, until ``m`` steps pass
    without a transfer. Returns ``(indx, steps_exceeded)``."""
    m = x.shape[0]
    icoun = 0
    istep = 0
    while True:
        for i0 in range(m):
            icoun += 1
            istep += 1
            if istep >= max_steps:
                return indx, True
            l1 = ic1[i0]
            l2 = ic2[i0]
            if nc[l1] != 1:
                if istep <= ncp[l1]:  # l1 changed within the last m steps
                    d[i0] = _sqdist(x, i0, c, l1) * an1[l1]
                if istep < ncp[l1] or istep < ncp[l2]:
                    r2 = d[i0] / an2[l2]
                    if _sqdist(x, i0, c, l2, r2) < r2:
                        icoun = 0
                        indx = 0
                        itran[l1] = 1
                        itran[l2] = 1
                        ncp[l1] = istep + m
                        ncp[l2] = istep + m
                        _transfer(x, c, i0, l1, l2, nc, an1, an2)
                        ic1[i0] = l2
                        ic2[i0] = l1
            if icoun == m:
                return indx, False


@numba.njit(cache=True)
def _hartigan_wong(x, c, max_iter, max_qtran):
    """Returns ``(clusters, centres, iterations, fault)``; fault 0 ok, 1 empty cluster, 2 not converged in
    ``max_iter``, 4 quick-transfer steps exceeded (R warns for 2 and 4 and keeps the result)."""
    m = x.shape[0]
    k = c.shape[0]
    ic1 = np.zeros(m, dtype=np.int64)
    ic2 = np.zeros(m, dtype=np.int64)
    # closest and second-closest centre of every point
    for i in range(m):
        ic1[i] = 0
        ic2[i] = 1
        dt0 = _sqdist(x, i, c, 0)
        dt1 = _sqdist(x, i, c, 1)
        if dt0 > dt1:
            ic1[i] = 1
            ic2[i] = 0
            dt0, dt1 = dt1, dt0
        for l in range(2, k):
            db = _sqdist(x, i, c, l, dt1)
            if db >= dt1:
                continue
            if db < dt0:
                dt1 = dt0
                ic2[i] = ic1[i]
                dt0 = db
                ic1[i] = l
            else:
                dt1 = db
                ic2[i] = l
    c, nc = _cluster_means(x, ic1, k)
    if (nc == 0).any():
        return ic1, c, 0, 1
    an1 = np.empty(k)
    an2 = np.empty(k)
    ncp = np.full(k, -1, dtype=np.int64)
    itran = np.ones(k, dtype=np.int64)
    live = np.zeros(k, dtype=np.int64)
    for l in range(k):
        an2[l] = nc[l] / (nc[l] + 1.0)
        an1[l] = _BIG if nc[l] == 1 else nc[l] / (nc[l] - 1.0)
    d = np.zeros(m)
    indx = 0
    fault = 2
    it = 0
    for it in range(1, max_iter + 1):
        indx = _optimal_transfer(x, c, ic1, ic2, nc, an1, an2, ncp, d, itran, live, indx)
        if indx == m:
            fault = 0
            break
        indx, exceeded = _quick_transfer(x, c, ic1, ic2, nc, an1, an2, ncp, d, itran, indx, max_qtran)
        if exceeded:
            fault = 4
            break
        if k == 2:
            fault = 0
            break
        ncp[:] = 0
    c, _ = _cluster_means(x, ic1, k)  # final centres from the assignment, as R recomputes them
    return ic1, c, it, fault


def hartigan_wong(x: np.ndarray, centers: np.ndarray, max_iter: int = 10) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Hartigan–Wong k-means of ``x`` (n × d) from the initial ``centers`` (k × d, 2 ≤ k < n).

    Returns ``(labels, centers, iterations, fault)``: labels 0..k−1; ``fault`` 0 converged, 2 not converged
    within ``max_iter`` optimal-transfer passes (R warns "did not converge"), 4 the quick-transfer stage
    exceeded its step limit (R warns too). R's ``iter.max`` is ``max_iter``. Raises ``ValueError`` for an
    empty initial cluster (R: "empty cluster: try a better set of initial centers").
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    c = np.array(centers, dtype=np.float64, order="C")
    if x.ndim != 2 or c.ndim != 2 or c.shape[1] != x.shape[1]:
        raise ValueError(f"x (n × d) and centers (k × d) must agree in d; got {x.shape} and {c.shape}")
    k = c.shape[0]
    if not 2 <= k < x.shape[0]:
        raise ValueError(f"Hartigan-Wong needs 2 <= k < n points; got k={k}, n={x.shape[0]}")
    labels, c, it, fault = _hartigan_wong(x, c, int(max_iter), 50 * x.shape[0])
    if fault == 2:
        it += 1  # R reports iter.max + 1 when the passes ran out
    if fault == 1:
        raise ValueError("k-means: an initial centre has no closest point (empty cluster); use other centres")
    return labels, c, int(it), int(fault)


def kmeans_r(x: np.ndarray, k: int, *, rng: np.random.Generator, n_init: int = 1, max_iter: int = 10) -> np.ndarray:
    """R's ``kmeans(x, centers = k, iter.max = max_iter, nstart = n_init)`` (Hartigan–Wong). Initial centres
    are ``k`` random rows of ``x``; as in R, they are drawn from the distinct rows instead when the draw
    holds a duplicate or when ``n_init`` ≥ 2, and of several starts the one with the lowest within-cluster
    sum of squares is kept. Returns the labels (0..k−1)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    pool = x
    first = x[rng.choice(x.shape[0], size=k, replace=False)] if n_init <= 1 else None
    if first is None or len(np.unique(first, axis=0)) < k:
        pool = np.unique(x, axis=0)
        if pool.shape[0] < k:
            raise ValueError(f"k-means: more cluster centres ({k}) than distinct data points ({pool.shape[0]})")
        first = pool[rng.choice(pool.shape[0], size=k, replace=False)]
    best, best_wss = None, np.inf
    for start in range(max(1, int(n_init))):
        centres = first if start == 0 else pool[rng.choice(pool.shape[0], size=k, replace=False)]
        labels, c, _, _ = hartigan_wong(x, centres, max_iter)
        wss = float(((x - c[labels]) ** 2).sum())
        if wss < best_wss:
            best, best_wss = labels, wss
    return best
