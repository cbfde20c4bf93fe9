"""Where the next points go: the new sites that cover the most street, or the fewest that reach a target.

Two questions on the same instance, existing points kept where they are:

- **maximal covering** (``count``): choose at most ``count`` new sites maximising the newly covered street length
  (the maximal covering location problem, Church & ReVelle 1974);
- **set covering** (``target_pct``): the fewest new sites after which the covered share of the street length reaches
  the target (a partial set-covering problem).

The instance is abstract — a weight per elementary street piece still uncovered (geodesic metres) and a boolean
incidence matrix, candidate site × piece, "this site would cover this piece" — so the solver is tested on its own.
The coverage engine (:mod:`geoservice.coverage_engine`) builds it from the streets and the points for a radius,
kinds and mode; this module only chooses.

Solving. Pieces no candidate reaches are dropped, and pieces covered by exactly the same candidates are merged (their
weights summed) — on a street network that shrinks the matrix many times without changing any answer. Then:

1. greedy with lazy evaluation (a site's gain only falls as others are chosen, so a stale gain is an upper bound and
   most candidates are never re-evaluated), within (1 − 1/e) of the optimum for maximal covering; there, improved by
   exchanges (a chosen site swapped for the candidate adding more in its place) for up to a fifth of the time limit.
   This is the answer (``greedy``) when the MILP finds nothing better;
2. unless greedy's bound already proves it optimal, the exact MILP with :func:`scipy.optimize.milp` (HiGHS) on the
   candidates no other dominates (a candidate covering a subset of another's pieces can be swapped for it without
   loss; on streets that leaves a third to a half of them), when they are at most ``max_exact_candidates``:
   ``x_i`` binary (site i chosen), ``y_j`` in [0, 1] (piece j covered), ``y_j ≤ Σ_i a_ij x_i``; maximise
   ``Σ w_j y_j`` with ``Σ x_i ≤ count``, or minimise ``Σ x_i`` with ``Σ w_j y_j ≥ need``. ``y`` needs no
   integrality: for integer ``x`` the optimum sets it to 0 or 1 anyway. HiGHS runs in a forked child killed at the
   time limit (it checks its own limit only between phases and overran it by seconds on a whole city).

Measured on the demo city (3,893 segments, 4,101 candidates, all kinds, 2 shared cores): at 150 m, 10 sites — the
MILP proves greedy's answer optimal in 3.9 s (greedy 0.1 s, its own bound 0.9 % above); at 500 m, 10 sites — 1,101
undominated candidates × 15,202 pieces, the MILP does not finish in 10 s and greedy's answer after exchanges stands
(72.8 km, 4 % more than greedy alone; bound 12 % above); walking 500 m, 5 sites: likewise (bound 1.3 % above). On a
10,022-segment city with 10,000 points (kiosks only, walking 500 m, 5 sites) the MILP finds 0.7 % more than greedy
and proves it in 0.6 s; on a 100,105-segment one (kiosks, 500 m, 10 sites) 14,858 useful candidates leave 370
undominated and the MILP proves its answer in 0.6 s, while at 150 m (105,308 useful candidates) greedy answers in
1.5 s with its bound 0.9 % above. There the whole question takes 1.6 s (500 m) to 5-11 s (150 m) straight and 48 s
walking (5 sites, 500 m), most of it the engine's spans of the candidates near a street not yet covered — the others
are left out first (:func:`_near_uncovered`: walking 101 s → 48 s, straight at 500 m 7.5 s → 1.6 s).

The answer says which method gave it and how far from the optimum it can be: the MILP's own gap (0 when it proved
optimality), or for greedy a bound computed on the way — for maximal covering ``f(S_k) + the count largest marginal
gains after S_k``, the least over the greedy prefixes S_k (coverage is submodular, so no set of ``count`` sites can
do better); for set covering the fewest sites whose single gains add up to the need (coverage is subadditive). When
the MILP stops at its time limit with a solution better than greedy's, that solution is given, as ``milp`` with
``optimal`` false and HiGHS's gap.

Chosen sites are listed in greedy order within the chosen set (each time the one adding the most), with the
marginal gain of each, so that the first k of a list are a sensible smaller plan and the gains add up to the
objective exactly.

Candidates (:func:`default_candidates`): street intersections (routing nodes where three or more segments meet) and
the midpoint of every street segment — minus the places a stall may not stand: an intersection touching an arterial
road (``geoservice.coverage_engine.ARTERIAL_CLASSES``: motorway, trunk, primary, secondary and their links — a
junction of a main road is traffic, not pavement) and the midpoint of an arterial (whose kerbside is a motor lane);
the seeds set the 疏导点 on side streets. Or a planner's own list
(:func:`read_candidates`: CSV of ``lon,lat`` or GeoJSON points, at most :data:`MAX_UPLOADED_CANDIDATES`).
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import math
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import shapely
import sqlalchemy as sa
from scipy.optimize import Bounds, LinearConstraint, milp
from sqlalchemy.engine import Connection

from geoservice.coverage_engine import CoverageEngine, SitingInstance, complement, engine_for
from geoservice.crs import metric_transformer
from geoservice.errors import InvalidParameter
from geoservice.query import (
    BBox,
    check_bbox,
    check_district,
    check_kinds,
    check_lonlat,
    check_mode,
    check_radius,
    clip_bbox,
)

MAX_COUNT = 50
"""Most new sites one maximal-covering question asks for."""
DEFAULT_COUNT = 5
"""New sites asked for when neither a count nor a target is given (the API and the command)."""
MAX_UPLOADED_CANDIDATES = 10_000
"""Most candidate sites an uploaded file may hold."""
MAX_UPLOAD_BYTES = 1_000_000
"""Largest uploaded candidate file (the app refuses larger bodies anyway)."""
SOURCES = ("intersection", "midpoint", "uploaded")
"""Where a candidate site comes from."""


# -- the solver, on an abstract instance -------------------------------------------------------------------------

@dataclass(frozen=True)
class Solution:
    """What the solver chose.

    Attributes:
        chosen: candidate indices (rows of the incidence) in greedy order within the chosen set.
        gains: the marginal gain of each, in the weights' unit (they add up to ``objective``).
        objective: the weight newly covered by the chosen set.
        method: ``milp`` or ``greedy``.
        optimal: proven optimal (the MILP finished).
        gap: relative optimality gap of the problem's own objective (covered weight for maximal covering, number
            of sites for set covering): 0 when optimal; from the MILP or the greedy bound otherwise; None unknown.
        bound: the best bound on the problem's objective (an upper bound on the weight for maximal covering, a lower
            bound on the number of sites for set covering).
        seconds: wall time of the whole solve.
        reduced_candidates, reduced_pieces: the size of the instance after dropping and merging.
        undominated_candidates: of those, how many no other candidate dominates (what the MILP would take); None
            when not looked for (greedy proved optimal, or too many candidates).
    """

    chosen: tuple[int, ...]
    gains: tuple[float, ...]
    objective: float
    method: str
    optimal: bool
    gap: float | None
    bound: float | None
    seconds: float
    reduced_candidates: int
    reduced_pieces: int
    undominated_candidates: int | None = None


@dataclass(frozen=True)
class _Reduced:
    """The instance without unreachable pieces, with identical pieces merged; ``rows`` maps back to candidates."""

    weights: np.ndarray
    incidence: sp.csr_matrix
    rows: np.ndarray


def _check_instance(weights: np.ndarray, incidence: sp.spmatrix) -> tuple[np.ndarray, sp.csr_matrix]:
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 1 or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("weights must be a vector of finite numbers ≥ 0")
    incidence = sp.csr_matrix(incidence, dtype=bool)
    if incidence.shape[1] != weights.shape[0]:
        raise ValueError(f"incidence has {incidence.shape[1]} columns for {weights.shape[0]} weights")
    return weights, incidence


def _reduce(weights: np.ndarray, incidence: sp.csr_matrix) -> _Reduced:
    """The instance without what cannot matter; every answer is the same on it.

    Pieces of no weight or that no candidate covers are dropped, pieces covered by the same candidates merged, and
    candidates that cover nothing left dropped.
    """
    reach = np.asarray(incidence.sum(axis=0)).ravel()
    keep = np.flatnonzero((reach > 0) & (weights > 0))
    by_piece = incidence[:, keep].T.tocsr()
    by_piece.sort_indices()
    label = _same_rows(by_piece)
    groups = int(label.max()) + 1 if label.size else 0
    merged_weights = np.bincount(label, weights=weights[keep], minlength=groups)
    # candidate × merged piece: a candidate covers a merged piece when it covers any (hence every) piece of it.
    merge = sp.csr_matrix((np.ones(keep.size, dtype=bool), (np.arange(keep.size), label)),
                          shape=(keep.size, groups))
    merged = (incidence[:, keep].astype(np.int32) @ merge.astype(np.int32)).astype(bool).tocsr()
    rows = np.flatnonzero(np.asarray(merged.sum(axis=1)).ravel() > 0)
    return _Reduced(merged_weights, merged[rows].tocsr(), rows)


def _same_rows(rows: sp.csr_matrix) -> np.ndarray:
    """A group number per row of a boolean CSR matrix with sorted indices, equal for rows with the same columns.

    Rows are grouped by their length and two 64-bit sums of random keys of their columns (numpy, no Python loop per
    row); every group is then checked member by member against its first row, and should two different rows ever
    share their sums, the rows are grouped one by one instead — the grouping is exact either way.
    """
    n = rows.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    keys = np.random.default_rng(0).integers(0, 2**63, size=(2, rows.shape[1]), dtype=np.uint64)
    length = np.diff(rows.indptr)
    sums = np.zeros((2, n), dtype=np.uint64)
    nonempty = length > 0
    starts = rows.indptr[:-1][nonempty]
    with np.errstate(over="ignore"):  # the sums wrap modulo 2**64: only their equality matters
        for k in range(2):
            sums[k, nonempty] = np.add.reduceat(keys[k][rows.indices], starts)
    order = np.lexsort((sums[1], sums[0], length))
    new_group = np.r_[True, (np.diff(length[order]) != 0) | (np.diff(sums[0][order]) != 0)
                      | (np.diff(sums[1][order]) != 0)]
    label = np.empty(n, dtype=np.int64)
    label[order] = np.cumsum(new_group) - 1
    representative = order[np.flatnonzero(new_group)][label]
    offsets = np.arange(rows.indices.size) - np.repeat(rows.indptr[:-1], length)
    if np.array_equal(rows.indices, rows.indices[np.repeat(rows.indptr[representative], length) + offsets]):
        return label
    groups: dict[bytes, int] = {}
    return np.array([groups.setdefault(rows.indices[rows.indptr[j]:rows.indptr[j + 1]].tobytes(), len(groups))
                     for j in range(n)], dtype=np.int64)


def _gain(incidence: sp.csr_matrix, weights: np.ndarray, covered: np.ndarray, i: int) -> float:
    cols = incidence.indices[incidence.indptr[i]:incidence.indptr[i + 1]]
    return float(weights[cols[~covered[cols]]].sum())


def _mark(incidence: sp.csr_matrix, covered: np.ndarray, i: int) -> None:
    covered[incidence.indices[incidence.indptr[i]:incidence.indptr[i + 1]]] = True


def _greedy(weights: np.ndarray, incidence: sp.csr_matrix, *, count: int | None = None,
            need: float | None = None, among: Sequence[int] | None = None) -> tuple[list[int], list[float]]:
    """Lazy greedy: the site adding the most, again and again, until ``count`` sites, the ``need`` or no gain.

    ``among`` restricts the choice (ordering a given set); ties go to the lower index.
    """
    covered = np.zeros(weights.shape[0], dtype=bool)
    pool = np.arange(incidence.shape[0]) if among is None else np.asarray(among, dtype=np.int64)
    first = (incidence @ weights)[pool] if len(pool) else np.empty(0)
    heap = list(zip((-first).tolist(), pool.tolist(), strict=True))
    heapq.heapify(heap)
    chosen, gains, total = [], [], 0.0
    while heap and (count is None or len(chosen) < count) and (need is None or total < need - _slack(need)):
        _, i = heapq.heappop(heap)
        gain = _gain(incidence, weights, covered, i)
        if heap and gain < -heap[0][0]:
            heapq.heappush(heap, (-gain, i))  # its gain fell below another's bound: look again later
            continue
        if gain <= 0:
            break
        chosen.append(i)
        gains.append(gain)
        total += gain
        _mark(incidence, covered, i)
    return chosen, gains


def _max_cover_bound(weights: np.ndarray, incidence: sp.csr_matrix, chosen: list[int], count: int) -> float:
    """An upper bound on the best coverage by ``count`` sites.

    The least, over the greedy prefixes S, of f(S) plus the ``count`` largest marginal gains after S: coverage is
    submodular, so no ``count`` sites add more than that to S.
    """
    covered = np.zeros(weights.shape[0], dtype=bool)
    best, value = math.inf, 0.0
    for k in range(len(chosen) + 1):
        gains = incidence @ np.where(covered, 0.0, weights)
        top = np.sort(gains)[::-1][:count].sum() if gains.size else 0.0
        best = min(best, value + top)
        if k < len(chosen):
            value += _gain(incidence, weights, covered, chosen[k])
            _mark(incidence, covered, chosen[k])
    return best


def _set_cover_bound(weights: np.ndarray, incidence: sp.csr_matrix, need: float) -> int:
    """A lower bound on the number of sites reaching ``need``: the fewest whose single gains add up to it."""
    singles = np.sort(incidence @ weights)[::-1]
    return int(np.searchsorted(np.cumsum(singles), need - _slack(need)) + 1)


def _slack(need: float) -> float:
    # Lengths are sums of floats: a target met to within a nanometre per kilometre is met.
    return 1e-9 * max(1.0, abs(need))


@dataclass(frozen=True)
class _MilpResult:
    """What the parent needs of scipy's answer: the variables, whether HiGHS proved optimality, its dual bound."""

    x: np.ndarray | None
    proven: bool
    dual_bound: float | None


def _milp(weights: np.ndarray, incidence: sp.csr_matrix, *, count: int | None, need: float | None,
          time_limit_s: float) -> _MilpResult:
    """The exact model (see the module docstring), solved by HiGHS under ``time_limit_s``."""
    n, m = incidence.shape
    # y_j − Σ_i a_ij x_i ≤ 0 for every piece j.
    link = sp.hstack([-incidence.T.astype(float), sp.identity(m, format="csr")], format="csr")
    constraints = [LinearConstraint(link, -np.inf, 0.0)]
    if count is not None:
        c = np.concatenate([np.zeros(n), -weights])
        constraints.append(LinearConstraint(sp.csr_matrix(np.concatenate([np.ones(n), np.zeros(m)])), 0, count))
    else:
        c = np.concatenate([np.ones(n), np.zeros(m)])
        constraints.append(LinearConstraint(sp.csr_matrix(np.concatenate([np.zeros(n), weights])),
                                            need - _slack(need), np.inf))
    integrality = np.concatenate([np.ones(n), np.zeros(m)])
    result = milp(c, constraints=constraints, integrality=integrality, bounds=Bounds(0, 1),
                  options={"time_limit": time_limit_s, "disp": False})
    bound = getattr(result, "mip_dual_bound", None)
    return _MilpResult(result.x, result.status == 0, None if bound is None or not math.isfinite(bound) else bound)


_KILL_GRACE_S = 0.2


def _milp_by_deadline(weights: np.ndarray, incidence: sp.csr_matrix, *, count: int | None, need: float | None,
                      time_limit_s: float) -> _MilpResult | None:
    """:func:`_milp` in a child process stopped at the time limit; None when it gave no answer in time.

    HiGHS checks its time limit only between phases: on a whole city it overran a 10 s limit by up to 15 s (the root
    LP, presolve). A planner was promised an answer within the limit, so the solve runs in a forked child that is
    killed when the time is up (greedy's answer then stands).
    """
    if time_limit_s <= 0:
        return None
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_milp_child, args=(send, weights, incidence, count, need, time_limit_s),
                            daemon=True)
    child.start()
    send.close()
    try:
        if receive.poll(time_limit_s + _KILL_GRACE_S):
            return receive.recv()
        return None
    except EOFError:  # the child died (out of memory): no exact answer
        return None
    finally:
        receive.close()
        child.kill()
        child.join()


def _milp_child(send, weights, incidence, count, need, time_limit_s) -> None:
    try:
        send.send(_milp(weights, incidence, count=count, need=need, time_limit_s=time_limit_s))
    finally:
        send.close()


def _undominated(incidence: sp.csr_matrix) -> np.ndarray:
    """The candidates no other candidate dominates (covers a superset of; of equal sets the first is kept).

    A dominated candidate can be swapped for its dominator in any answer without covering less, so both questions
    keep their optimum without it; on streets most candidates are dominated by a neighbour.
    """
    counts = incidence.astype(np.int32)
    shared = (counts @ counts.T).tocoo()
    size = np.asarray(counts.sum(axis=1)).ravel()
    i, k, v = shared.row, shared.col, shared.data
    dominated = (i != k) & (v == size[i]) & ((size[k] > size[i]) | ((size[k] == size[i]) & (k < i)))
    return np.setdiff1d(np.arange(incidence.shape[0]), i[dominated])


def _greedy_answer(w: np.ndarray, a: sp.csr_matrix, *, count: int | None, need: float | None):
    """Greedy's choice, its gains, and the bound on the optimum that comes with it."""
    chosen, gains = _greedy(w, a, count=count, need=need)
    if count is not None:
        return chosen, gains, _max_cover_bound(w, a, chosen, count)
    if sum(gains) < need - _slack(need):
        raise ValueError("the need cannot be met by all candidates together")
    return chosen, gains, _set_cover_bound(w, a, need)


def _gap(value: float, bound: float, *, count: int | None) -> float:
    """Relative gap of the problem's own objective: covered weight (maximal covering) or sites (set covering)."""
    if count is not None:
        return max(0.0, (bound - value) / bound) if bound - value > _slack(bound) else 0.0
    return max(0.0, (value - bound) / value) if value > bound else 0.0


_DOMINANCE_FACTOR = 4
"""Dominated candidates are looked for when the useful ones are at most this many times the MILP's limit: the
pairwise product it takes grows with candidates × their neighbours."""


def _exact(w: np.ndarray, a: sp.csr_matrix, *, count: int | None, need: float | None, time_limit_s: float,
           max_exact_candidates: float) -> tuple[int, tuple | None]:
    """The MILP on the undominated candidates, when they are few enough.

    Returns:
        How many candidates no other dominates, and (chosen, proven optimal, bound) in ``a``'s rows — or None when
        they are too many or the MILP gave no answer in time.
    """
    keep = _undominated(a)
    if len(keep) > max_exact_candidates:
        return len(keep), None
    smaller = _reduce(w, a[keep].tocsr())
    result = _milp_by_deadline(smaller.weights, smaller.incidence, count=count, need=need, time_limit_s=time_limit_s)
    if result is None or result.x is None:
        return len(keep), None
    picked = keep[smaller.rows[np.flatnonzero(result.x[:smaller.incidence.shape[0]] > 0.5)]]
    return len(keep), ([int(i) for i in picked], result.proven, _milp_bound(result, count=count))


_EXCHANGE_SHARE = 0.2
"""Share of the time limit the exchanges after greedy may take (they stop sooner when no exchange helps)."""


def _exchanged(w: np.ndarray, a: sp.csr_matrix, chosen: list[int], *, deadline: float) -> list[int]:
    """Greedy's sites improved by exchanges (maximal covering).

    Each chosen site in turn is replaced by the candidate that would add the most in its place, when that covers
    more than the site alone does, until a whole round changes nothing or the deadline passes. On the demo city at
    500 m this adds 4 % to greedy's ten sites in 0.1 s.
    """
    chosen = list(chosen)
    multiplicity = np.zeros(w.shape[0], dtype=np.int64)
    for site in chosen:
        multiplicity[a.indices[a.indptr[site]:a.indptr[site + 1]]] += 1
    changed = True
    while changed and time.perf_counter() < deadline:
        changed = False
        for k, site in enumerate(chosen):
            row = a.indices[a.indptr[site]:a.indptr[site + 1]]
            alone = row[multiplicity[row] == 1]
            loss = float(w[alone].sum())
            open_weights = np.where(multiplicity == 0, w, 0.0)
            open_weights[alone] = w[alone]
            gains = a @ open_weights
            gains[chosen] = -np.inf
            best = int(np.argmax(gains))
            if gains[best] > loss + _slack(loss):
                multiplicity[row] -= 1
                multiplicity[a.indices[a.indptr[best]:a.indptr[best + 1]]] += 1
                chosen[k], changed = best, True
            if time.perf_counter() >= deadline:
                break
    return chosen


def _solve(weights, incidence, *, count: int | None, need: float | None, time_limit_s: float,
           max_exact_candidates: float) -> Solution:
    started = time.perf_counter()
    weights, incidence = _check_instance(weights, incidence)
    reduced = _reduce(weights, incidence)
    w, a = reduced.weights, reduced.incidence
    chosen, gains, bound = _greedy_answer(w, a, count=count, need=need)
    method, value = "greedy", sum(gains) if count is not None else len(chosen)
    optimal = bool(_gap(value, bound, count=count) == 0)
    if count is not None and not optimal and len(chosen) > 0:
        swapped = _exchanged(w, a, chosen, deadline=started + _EXCHANGE_SHARE * time_limit_s)
        if _coverage(w, a, swapped) > value + _slack(value):
            chosen, gains = _greedy(w, a, among=swapped)
            value = sum(gains)
            optimal = bool(_gap(value, bound, count=count) == 0)
    undominated = None
    if not optimal and a.shape[0] <= _DOMINANCE_FACTOR * max_exact_candidates:
        undominated, exact = _exact(w, a, count=count, need=need, max_exact_candidates=max_exact_candidates,
                                    time_limit_s=time_limit_s - (time.perf_counter() - started))
        if exact is not None:
            picked, proven, milp_bound = exact
            better = _coverage(w, a, picked) > value + _slack(value) if count is not None else len(picked) < value
            if proven or better:
                chosen, gains = _greedy(w, a, among=picked)
                method, optimal = "milp", proven
                value = sum(gains) if count is not None else len(chosen)
            if milp_bound is not None:
                bound = min(bound, milp_bound) if count is not None else max(bound, milp_bound)
            if proven:
                bound = value
    return Solution(chosen=tuple(int(reduced.rows[i]) for i in chosen), gains=tuple(gains), objective=sum(gains),
                    method=method, optimal=optimal, gap=0.0 if optimal else _gap(value, bound, count=count),
                    bound=bound, seconds=time.perf_counter() - started, reduced_candidates=a.shape[0],
                    reduced_pieces=w.shape[0], undominated_candidates=undominated)


def _milp_bound(result: _MilpResult, *, count: int | None) -> float | None:
    """HiGHS's bound on the optimum in the problem's terms (covered weight, or whole sites), None when it has none."""
    if result.dual_bound is None:
        return None
    # The model minimises −covered weight for maximal covering: its dual bound is the negated upper bound.
    return -result.dual_bound if count is not None else math.ceil(result.dual_bound - 1e-6)


def _coverage(weights: np.ndarray, incidence: sp.csr_matrix, chosen: Sequence[int]) -> float:
    covered = np.zeros(weights.shape[0], dtype=bool)
    for i in chosen:
        _mark(incidence, covered, i)
    return float(weights[covered].sum())


def max_cover(weights, incidence, *, count: int, time_limit_s: float, max_exact_candidates: float) -> Solution:
    """At most ``count`` candidates covering the most weight (maximal covering).

    Args:
        weights: ``(m,)`` weight of each piece (≥ 0).
        incidence: ``(n, m)`` sparse boolean, candidate i covers piece j.
        count: how many sites at most (fewer when they already cover every reachable piece).
        time_limit_s: wall time for the whole solve; the MILP gets what greedy leaves.
        max_exact_candidates: the MILP is tried only when the reduced instance has at most this many candidates.

    Returns:
        The :class:`Solution`; ``chosen`` are row indices of ``incidence``.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    return _solve(weights, incidence, count=count, need=None, time_limit_s=time_limit_s,
                  max_exact_candidates=max_exact_candidates)


def set_cover(weights, incidence, *, need: float, time_limit_s: float, max_exact_candidates: float) -> Solution:
    """The fewest candidates covering at least ``need`` weight (partial set covering).

    Args:
        weights: as :func:`max_cover`.
        incidence: as :func:`max_cover`.
        need: the weight to cover (> 0); ``ValueError`` when all candidates together cover less.
        time_limit_s: as :func:`max_cover`.
        max_exact_candidates: as :func:`max_cover`.

    Returns:
        The :class:`Solution`; ``bound`` is a lower bound on the number of sites.
    """
    if need <= 0:
        return Solution((), (), 0.0, "greedy", True, 0.0, 0, 0.0, 0, 0)
    return _solve(weights, incidence, count=None, need=need, time_limit_s=time_limit_s,
                  max_exact_candidates=max_exact_candidates)


# -- candidate sites ---------------------------------------------------------------------------------------------

def read_candidates(body: bytes | str, *, limit: int = MAX_UPLOADED_CANDIDATES) -> np.ndarray:
    """Candidate sites from a planner's file: GeoJSON (Point or MultiPoint features) or CSV of ``lon,lat``.

    A CSV may have a header row (any row whose first two cells are not numbers is skipped only when it is the first).

    Args:
        body: the file's bytes (UTF-8, a byte-order mark allowed) or text.
        limit: most sites allowed.

    Returns:
        ``(n, 2)`` array of WGS 84 lon, lat.

    Raises:
        InvalidParameter: not GeoJSON nor CSV, a bad coordinate (with its row or feature), none or too many sites.
    """
    if isinstance(body, bytes):
        if len(body) > MAX_UPLOAD_BYTES:
            raise InvalidParameter(f"candidates: the file is larger than {MAX_UPLOAD_BYTES} bytes")
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidParameter("candidates must be UTF-8 text: CSV of lon,lat or GeoJSON points") from None
    else:
        text = body
    stripped = text.lstrip()
    sites = _geojson_sites(stripped) if stripped.startswith("{") else _csv_sites(stripped)
    if not sites:
        raise InvalidParameter("candidates holds no site: give CSV rows lon,lat or GeoJSON Point features")
    if len(sites) > limit:
        raise InvalidParameter(f"candidates holds {len(sites)} sites; at most {limit} are allowed")
    return np.array(sites, dtype=float).reshape(-1, 2)


def _site(lon, lat, where: str) -> tuple[float, float]:
    try:
        lon, lat = float(lon), float(lat)
    except (TypeError, ValueError):
        raise InvalidParameter(f"candidates {where}: lon and lat must be numbers, got {lon!r}, {lat!r}") from None
    check_lonlat(lon, lat, what=f"candidates {where}")
    return lon, lat


def _geojson_sites(text: str) -> list[tuple[float, float]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"candidates is not valid GeoJSON: {exc.msg} at line {exc.lineno}") from None
    features = doc.get("features") if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else [doc]
    if not isinstance(features, list):
        raise InvalidParameter("candidates: a FeatureCollection's features must be a list")
    sites = []
    for n, feature in enumerate(features, 1):
        geometry = feature.get("geometry") if isinstance(feature, dict) and feature.get("type") == "Feature" \
            else feature
        kind = geometry.get("type") if isinstance(geometry, dict) else None
        coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
        if kind == "Point" and isinstance(coords, list) and len(coords) >= 2:
            sites.append(_site(coords[0], coords[1], f"feature {n}"))
        elif kind == "MultiPoint" and isinstance(coords, list):
            sites.extend(_site(*(list(c) + [None, None])[:2], f"feature {n}") for c in coords)
        else:
            raise InvalidParameter(f"candidates feature {n}: only Point and MultiPoint geometries are sites, "
                                   f"got {kind!r}")
    return sites


def _csv_sites(text: str) -> list[tuple[float, float]]:
    sites = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise InvalidParameter(f"candidates row {n}: expected lon,lat, got {','.join(row)!r}")
        if n == 1 and not _is_number(row[0]):
            continue  # a header
        sites.append(_site(row[0].strip(), row[1].strip(), f"row {n}"))
    return sites


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Candidates:
    """Candidate sites: WGS 84 positions, where each comes from, and the street segment of a midpoint."""

    lonlat: np.ndarray
    source: np.ndarray
    street_id: np.ndarray

    def __len__(self) -> int:
        return self.lonlat.shape[0]

    def subset(self, keep: np.ndarray) -> Candidates:
        """The candidates at ``keep`` (a mask or indices)."""
        return Candidates(self.lonlat[keep], self.source[keep], self.street_id[keep])


def candidate_sites(nodes: dict, midpoints: dict) -> Candidates:
    """Intersections and segment midpoints where a stall may stand (see the module docstring).

    Args:
        nodes: ``lon``, ``lat``, ``degree`` and ``arterial`` (touches an arterial street) of every street end.
        midpoints: ``lon``, ``lat``, ``street_id`` and ``arterial`` of every street segment's midpoint.

    Returns:
        Intersections of degree ≥ 3 touching no arterial, then midpoints of non-arterial segments.
    """
    junction = (np.asarray(nodes["degree"]) >= 3) & ~np.asarray(nodes["arterial"], dtype=bool)
    side = ~np.asarray(midpoints["arterial"], dtype=bool)
    lonlat = np.vstack([np.column_stack([nodes["lon"], nodes["lat"]])[junction],
                        np.column_stack([midpoints["lon"], midpoints["lat"]])[side]]).astype(float)
    n_nodes, n_mid = int(junction.sum()), int(side.sum())
    source = np.array(["intersection"] * n_nodes + ["midpoint"] * n_mid, dtype=object)
    street = np.concatenate([np.full(n_nodes, -1, dtype=np.int64),
                             np.asarray(midpoints["street_id"], dtype=np.int64)[side]])
    return Candidates(lonlat.reshape(-1, 2), source, street)


def uploaded_sites(lonlat: np.ndarray) -> Candidates:
    """A planner's own candidate sites (from :func:`read_candidates`)."""
    lonlat = np.asarray(lonlat, dtype=float).reshape(-1, 2)
    return Candidates(lonlat, np.array(["uploaded"] * len(lonlat), dtype=object), np.full(len(lonlat), -1))


def default_candidates(engine: CoverageEngine) -> Candidates:
    """:func:`candidate_sites` of the city's streets, as the coverage engine holds them."""
    return candidate_sites(engine.street_nodes(), engine.street_midpoints())


_IN_DISTRICT = sa.text("""
    SELECT coalesce(array_agg(t.n ORDER BY t.n), '{}')
    FROM unnest(CAST(:lon AS float8[]), CAST(:lat AS float8[])) WITH ORDINALITY AS t(lon, lat, n)
    JOIN district d ON d.code = :district AND ST_Covers(d.geom, ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326))
""")


def _in_area(conn: Connection, sites: Candidates, *, district: str | None, bbox: BBox | None) -> Candidates:
    """The default candidates inside the area asked about (a planner places new points there)."""
    keep = np.ones(len(sites), dtype=bool)
    if bbox is not None:
        lon, lat = sites.lonlat[:, 0], sites.lonlat[:, 1]
        keep &= (lon >= bbox[0]) & (lon <= bbox[2]) & (lat >= bbox[1]) & (lat <= bbox[3])
    if district is not None:
        inside = conn.execute(_IN_DISTRICT, {"lon": sites.lonlat[:, 0].tolist(), "lat": sites.lonlat[:, 1].tolist(),
                                             "district": district}).scalar_one()
        mask = np.zeros(len(sites), dtype=bool)
        mask[np.asarray(inside, dtype=np.int64) - 1] = True
        keep &= mask
    return sites.subset(keep)


# -- the question --------------------------------------------------------------------------------------------------

def check_count_or_target(count: int | None, target_pct: float | None) -> None:
    """``count`` (1 … :data:`MAX_COUNT`), ``target_pct`` (0 < t ≤ 100) or both; not neither."""
    if count is None and target_pct is None:
        raise InvalidParameter(f"give count (how many new sites, 1 to {MAX_COUNT}), target (the covered % to reach, "
                               "above 0 and at most 100) or both (the target with at most count sites)")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT):
        raise InvalidParameter(f"count must be a whole number from 1 to {MAX_COUNT}, got {count!r}")
    if target_pct is not None and (isinstance(target_pct, bool) or not isinstance(target_pct, int | float)
                                   or not math.isfinite(target_pct) or not 0 < target_pct <= 100):
        raise InvalidParameter(f"target must be a covered % above 0 and at most 100, got {target_pct!r}")


# The keyword signature is the one the report, the notebook and the API share (issue 11's contract).
def suggest_sites(conn: Connection, *, kinds: Sequence[str] | None = None, radius_m: float | None = None,  # noqa: PLR0913
                  mode: str = "straight", count: int | None = None, target_pct: float | None = None,
                  district: str | None = None, bbox: Sequence[float] | None = None,
                  candidates: np.ndarray | None = None, metric_crs: str, time_limit_s: float,
                  max_candidates: int | None = None, include_planned: bool = False, extent: BBox | None = None) -> dict:
    """Where new points of ``kinds`` would cover the most street: ``count`` sites, or the fewest reaching a target.

    Args:
        conn: database connection.
        kinds: kinds of the existing points that count (None or empty: all); their ``open`` points stay where they
            are (and ``planned`` ones too with ``include_planned``).
        radius_m: coverage radius in metres (0 < r ≤ 10 000); None: 300 for toilets only, else 500.
        mode: ``straight`` or ``walk`` (as :func:`geoservice.coverage.uncovered_streets`).
        count: maximal covering: at most this many new sites (1 … :data:`MAX_COUNT`).
        target_pct: set covering: the fewest new sites after which this % of the street length is covered — with
            ``count`` too, at most that many (when more are needed, the best ``count`` sites are given instead). A
            target beyond what all candidates together reach gets the fewest sites reaching that most.
        district: 6-digit code: the streets to cover and the default candidates inside this district.
        bbox: ``(minlon, minlat, maxlon, maxlat)``: likewise inside this box.
        candidates: ``(n, 2)`` lon/lat of the planner's own candidate sites (:func:`read_candidates`); None: the
            default candidates (module docstring) inside the area.
        metric_crs: the city's metric CRS (from the settings).
        time_limit_s: wall time for the solver (the setting ``siting_time_limit_s``).
        max_candidates: the exact MILP is tried only up to this many useful candidates (the setting
            ``siting_max_candidates``); None: always tried.
        include_planned: count planned points as existing ("what if").
        extent: the city's extent (lon/lat): ``bbox`` is cut to it first, as in ``coverage.uncovered_streets`` — a
            box far larger than the city is the whole city, a box outside it holds no street.

    Returns:
        A GeoJSON FeatureCollection of the chosen sites in order — properties ``rank``, ``lon``, ``lat``,
        ``gain_km`` (marginal newly covered km), ``covered_pct`` (cumulative, after this site), ``source``
        (intersection, midpoint, uploaded) and ``street_id`` (a midpoint's segment) — and a ``summary``: the
        question, ``problem`` (max_cover or set_cover), ``method`` (milp or greedy), ``optimal``, ``gap`` (relative
        optimality gap; 0 when proven optimal), ``bound`` (km for max_cover, sites for set_cover), ``objective_km``,
        ``seconds``, ``candidates`` (how many were considered), ``total_km``, ``covered_km`` and ``covered_pct``
        before, ``covered_pct_after``, ``most_pct`` (what all candidates together would reach) and ``target_reached``
        (None without a target).

    Raises:
        InvalidParameter: a bad kind, radius, mode, count, target, bbox, district code or candidate.
        NotFound: no district with that code.
    """
    kinds_ok = check_kinds(kinds)
    radius = check_radius(radius_m, kinds)
    check_mode(mode)
    check_count_or_target(count, target_pct)
    box = check_bbox(bbox)
    district = check_district(conn, district)
    if not 0 < time_limit_s <= 3600:
        raise InvalidParameter(f"time_limit_s must be between 0 and 3600 seconds, got {time_limit_s!r}")
    engine = engine_for(conn, metric_crs=metric_crs)
    area_box, empty = _area_box(box, extent)
    if candidates is None:
        sites = _in_area(conn, default_candidates(engine), district=district, bbox=area_box)
    else:
        sites = uploaded_sites(candidates)
        for n, (lon, lat) in enumerate(sites.lonlat, 1):
            check_lonlat(float(lon), float(lat), what=f"candidate {n}")
    considered = len(sites)
    if empty:
        instance = SitingInstance(np.empty(0), sp.csr_matrix((len(sites), 0), dtype=bool), 0.0, 0.0)
    else:
        near = _near_uncovered(engine, sites.lonlat, mode=mode, kinds=kinds_ok, radius=radius,
                               include_planned=include_planned)
        considered, sites = len(sites), sites.subset(near)
        instance = engine.siting_instance(radius_m=radius, kinds=kinds_ok, mode=mode, sites_lonlat=sites.lonlat,
                                          include_planned=include_planned, district=district, bbox=area_box)
    limit = math.inf if max_candidates is None else max_candidates
    solution, problem, reached = _solve_question(instance, count=count, target_pct=target_pct,
                                                 time_limit_s=time_limit_s, max_exact_candidates=limit)
    return _answer(solution, sites, instance, question={
        "problem": problem, "count": count, "target_pct": target_pct, "target_reached": reached,
        "radius_m": radius, "mode": mode, "kinds": list(kinds_ok), "district": district,
        "bbox": list(box) if box else None, "include_planned": include_planned,
        "candidates_from": "default" if candidates is None else "uploaded", "candidates": considered,
        "time_limit_s": time_limit_s})


# Walking distance is never shorter than the straight line, but lengths along streets are geodesic and straight ones
# are in the metric CRS: a margin far above the CRS's scale error keeps every site that might reach.
_NEAR_MARGIN = 1.01
_NEAR_MARGIN_M = 1.0


def _near_uncovered(engine: CoverageEngine, lonlat: np.ndarray, *, mode: str, kinds: tuple[str, ...], radius: float,
                    include_planned: bool) -> np.ndarray:
    """Indices of the sites within the radius (straight, with a margin) of some street not yet covered.

    The others cannot cover anything new in either mode; leaving them out before the instance is built saves the
    engine their spans (walking, a search from every site).
    """
    if not len(lonlat):
        return np.empty(0, dtype=np.int64)
    starts, ends = complement(engine.covered(mode=mode, kinds=kinds, radius=radius, include_planned=include_planned),
                              engine.n_streets)
    keep = ends > starts
    lines = engine.interval_lines(starts[keep], ends[keep])
    if not lines:
        return np.empty(0, dtype=np.int64)
    to_metric, _ = metric_transformer(engine.metric_crs)
    coords = np.array([c for line in lines for c in line], dtype=float)
    x, y = to_metric.transform(coords[:, 0], coords[:, 1])
    owner = np.repeat(np.arange(len(lines)), [len(line) for line in lines])
    uncovered = shapely.linestrings(np.column_stack([x, y]), indices=owner)
    sx, sy = to_metric.transform(lonlat[:, 0], lonlat[:, 1])
    site, _ = shapely.STRtree(uncovered).query(shapely.points(sx, sy), predicate="dwithin",
                                               distance=radius * _NEAR_MARGIN + _NEAR_MARGIN_M)
    return np.unique(site)


def _area_box(box: BBox | None, extent: BBox | None) -> tuple[BBox | None, bool]:
    """The box the streets are cut to (None: none) and whether the area holds no street at all.

    A box outside the city or of no width or height holds none; one holding the whole city cuts nothing.
    """
    if box is None:
        return None, False
    if extent is not None:
        clipped = clip_bbox(box, extent)
        if clipped is None:
            return None, True
        if clipped == extent:
            return None, False
        box = clipped
    return box, box[0] == box[2] or box[1] == box[3]


def _solve_question(instance, *, count: int | None, target_pct: float | None, time_limit_s: float,
                    max_exact_candidates: float) -> tuple[Solution, str, bool | None]:
    """The solution, the problem solved (max_cover or set_cover) and whether the target was reached (None: none).

    A target the candidates cannot reach gets the fewest sites covering all they can; a target that needs more than
    ``count`` sites gets the best ``count`` sites instead.
    """
    if target_pct is None:
        return max_cover(instance.weights, instance.incidence, count=count, time_limit_s=time_limit_s,
                         max_exact_candidates=max_exact_candidates), "max_cover", None
    started = time.perf_counter()
    need = target_pct / 100 * instance.total_m - instance.covered_m
    coverable = float(instance.weights[np.asarray(instance.incidence.sum(axis=0)).ravel() > 0].sum())
    solution = set_cover(instance.weights, instance.incidence, need=min(need, coverable), time_limit_s=time_limit_s,
                         max_exact_candidates=max_exact_candidates)
    if count is None or len(solution.chosen) <= count:
        return solution, "set_cover", bool(need <= coverable + _slack(need))
    solution = max_cover(instance.weights, instance.incidence, count=count,
                         time_limit_s=max(0.0, time_limit_s - (time.perf_counter() - started)),
                         max_exact_candidates=max_exact_candidates)
    return solution, "max_cover", bool(solution.objective >= need - _slack(need))


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None


def _answer(solution: Solution, sites: Candidates, instance, *, question: dict) -> dict:
    features, covered = [], instance.covered_m
    for rank, (i, gain) in enumerate(zip(solution.chosen, solution.gains, strict=True), 1):
        covered += gain
        lon, lat = (round(float(v), 7) for v in sites.lonlat[i])
        street = int(sites.street_id[i])
        features.append({"type": "Feature", "id": rank, "geometry": {"type": "Point", "coordinates": [lon, lat]},
                         "properties": {"rank": rank, "lon": lon, "lat": lat, "gain_km": round(gain / 1000, 4),
                                        "covered_pct": _pct(covered, instance.total_m),
                                        "source": str(sites.source[i]), "street_id": street if street >= 0 else None}})
    max_cover_problem = question["problem"] == "max_cover"
    bound = solution.bound
    summary = {**question, "method": solution.method, "optimal": bool(solution.optimal),
               "gap": None if solution.gap is None else round(solution.gap, 6),
               "bound": (round(bound / 1000, 4) if max_cover_problem else int(bound)) if bound is not None else None,
               "bound_unit": "km" if max_cover_problem else "sites",
               "sites": len(solution.chosen), "objective_km": round(solution.objective / 1000, 4),
               "seconds": round(solution.seconds, 3), "total_km": round(instance.total_m / 1000, 3),
               "covered_km": round(instance.covered_m / 1000, 3),
               "covered_pct": _pct(instance.covered_m, instance.total_m),
               "covered_pct_after": _pct(instance.covered_m + solution.objective, instance.total_m),
               "most_pct": _pct(instance.covered_m + float(
                   instance.weights[np.asarray(instance.incidence.sum(axis=0)).ravel() > 0].sum()), instance.total_m),
               "reduced_candidates": solution.reduced_candidates, "reduced_pieces": solution.reduced_pieces,
               "undominated_candidates": solution.undominated_candidates}
    return {"type": "FeatureCollection", "features": features, "summary": summary}


def sites_table(result: dict) -> str:
    """The answer of :func:`suggest_sites` as text for a terminal: one line per site, then the summary."""
    s = result["summary"]
    lines = [f"{'#':>3}  {'lon':>12}  {'lat':>11}  {'gain km':>8}  {'covered %':>9}  source"]
    for f in result["features"]:
        p = f["properties"]
        lines.append(f"{p['rank']:>3}  {p['lon']:>12.7f}  {p['lat']:>11.7f}  {p['gain_km']:>8.3f}  "
                     f"{p['covered_pct'] if p['covered_pct'] is not None else '-':>9}  {p['source']}")
    quality = "optimal" if s["optimal"] else f"gap {100 * s['gap']:.2f} %" if s["gap"] is not None else "gap unknown"
    lines.append(f"{s['sites']} sites by {s['method']} ({quality}) in {s['seconds']:.2f} s among {s['candidates']} "
                 f"candidates: +{s['objective_km']:.3f} km covered, {s['covered_pct']} % → {s['covered_pct_after']} % "
                 f"of {s['total_km']:.3f} km at {s['radius_m']:g} m ({s['mode']})")
    return "\n".join(lines)
