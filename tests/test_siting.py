"""Siting: the solver proven on small instances by brute force, candidates, the question on the demo city, the API
and the command.

The brute force enumerates every subset of candidates with plain numpy — no code shared with the solver — so an
optimum claimed by the MILP and the bound claimed for greedy are checked independently.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

from geoservice import siting
from geoservice.errors import InvalidParameter

# -- brute force ---------------------------------------------------------------------------------------------------


def _covered(weights: np.ndarray, dense: np.ndarray, subset) -> float:
    return float(weights[dense[list(subset)].any(axis=0)].sum()) if subset else 0.0


def _best_of(weights: np.ndarray, incidence, count: int) -> float:
    dense = incidence.toarray().astype(bool)
    return max(_covered(weights, dense, s) for r in range(count + 1)
               for s in itertools.combinations(range(dense.shape[0]), r))


def _fewest_for(weights: np.ndarray, incidence, need: float) -> int:
    dense = incidence.toarray().astype(bool)
    for r in range(dense.shape[0] + 1):
        if any(_covered(weights, dense, s) >= need - 1e-9 for s in itertools.combinations(range(dense.shape[0]), r)):
            return r
    raise AssertionError("need not reachable")


def _random_instance(seed: int, *, n: int | None = None, m: int | None = None):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(4, 12))
    m = m or int(rng.integers(6, 40))
    dense = rng.random((n, m)) < rng.uniform(0.1, 0.4)
    weights = np.round(rng.exponential(80.0, m), 3)  # street pieces of a few to a few hundred metres
    return weights, sp.csr_matrix(dense)


SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_milp_finds_the_brute_force_optimum(seed):
    weights, incidence = _random_instance(seed)
    count = 1 + seed % 4
    solution = siting.max_cover(weights, incidence, count=count, time_limit_s=30, max_exact_candidates=10_000)
    assert solution.optimal and solution.gap == 0
    assert solution.objective == pytest.approx(_best_of(weights, incidence, count), abs=1e-6)
    assert len(solution.chosen) <= count


@pytest.mark.parametrize("seed", SEEDS)
def test_greedy_is_within_its_bound_of_the_optimum(seed):
    weights, incidence = _random_instance(seed)
    count = 1 + seed % 4
    best = _best_of(weights, incidence, count)
    greedy = siting.max_cover(weights, incidence, count=count, time_limit_s=30, max_exact_candidates=0)
    assert greedy.method == "greedy"
    assert greedy.objective >= (1 - 1 / math.e) * best - 1e-9
    assert greedy.bound >= best - 1e-6  # the bound it reports is a true upper bound
    if greedy.optimal:
        assert greedy.objective == pytest.approx(best)
    else:
        assert greedy.gap == pytest.approx((greedy.bound - greedy.objective) / greedy.bound)


@pytest.mark.parametrize("seed", SEEDS)
def test_set_covering_is_minimal_by_brute_force(seed):
    weights, incidence = _random_instance(seed)
    reachable = _best_of(weights, incidence, incidence.shape[0]) if incidence.shape[0] <= 8 else \
        float(weights[np.asarray(incidence.sum(axis=0)).ravel() > 0].sum())
    need = reachable * (0.3 + 0.6 * (seed % 5) / 4)
    solution = siting.set_cover(weights, incidence, need=need, time_limit_s=30, max_exact_candidates=10_000)
    dense = incidence.toarray().astype(bool)
    assert _covered(weights, dense, solution.chosen) >= need - 1e-6
    assert len(solution.chosen) == _fewest_for(weights, incidence, need)
    assert solution.optimal
    greedy = siting.set_cover(weights, incidence, need=need, time_limit_s=30, max_exact_candidates=0)
    assert _covered(weights, dense, greedy.chosen) >= need - 1e-6
    assert greedy.bound <= len(solution.chosen) <= len(greedy.chosen)


@pytest.mark.parametrize("seed", range(10))
def test_gains_come_in_greedy_order_and_add_up_to_the_objective(seed):
    weights, incidence = _random_instance(seed, n=10, m=30)
    solution = siting.max_cover(weights, incidence, count=4, time_limit_s=30, max_exact_candidates=10_000)
    dense = incidence.toarray().astype(bool)
    assert sum(solution.gains) == pytest.approx(solution.objective)
    assert solution.objective == pytest.approx(_covered(weights, dense, solution.chosen))
    for k, gain in enumerate(solution.gains):
        before = _covered(weights, dense, solution.chosen[:k])
        assert gain == pytest.approx(_covered(weights, dense, solution.chosen[:k + 1]) - before)
        # no site of the chosen set not yet listed would have added more at this step
        for other in solution.chosen[k + 1:]:
            assert _covered(weights, dense, (*solution.chosen[:k], other)) - before <= gain + 1e-9


def test_greedy_misses_the_optimum_where_it_should_and_the_milp_finds_it():
    # Pieces x1, x2, y1, y2 of 100 m and z of 50 m. Site 0 covers x1, y1, z (250 m); site 1 x1, x2; site 2 y1, y2.
    # Greedy takes site 0 first and ends at 350 m with two sites; sites 1 and 2 cover 400 m.
    weights = np.array([100.0, 100.0, 100.0, 100.0, 50.0])
    incidence = sp.csr_matrix(np.array([[1, 0, 1, 0, 1], [1, 1, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=bool))
    greedy = siting.max_cover(weights, incidence, count=2, time_limit_s=30, max_exact_candidates=0)
    assert (greedy.method, greedy.objective, greedy.optimal) == ("greedy", 350.0, False)
    assert greedy.bound >= 400.0 and greedy.gap > 0
    exact = siting.max_cover(weights, incidence, count=2, time_limit_s=30, max_exact_candidates=10)
    assert (exact.method, exact.objective, exact.optimal, exact.gap) == ("milp", 400.0, True, 0.0)
    assert sorted(exact.chosen) == [1, 2]


def test_fewer_sites_than_asked_when_they_cover_everything_reachable():
    weights = np.array([10.0, 20.0, 30.0])
    incidence = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=bool))
    solution = siting.max_cover(weights, incidence, count=3, time_limit_s=30, max_exact_candidates=10)
    assert solution.chosen == (0,) and solution.objective == 60.0 and solution.optimal


def test_identical_pieces_are_merged_and_useless_candidates_dropped():
    weights = np.array([1.0, 2.0, 3.0, 4.0, 0.0])
    incidence = sp.csr_matrix(np.array([[1, 1, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 0, 0]],
                                       dtype=bool))
    solution = siting.max_cover(weights, incidence, count=1, time_limit_s=30, max_exact_candidates=10)
    # piece 3 no site covers, piece 4 weighs nothing; pieces 0 and 1 have the same sites; site 2 covers nothing left
    assert (solution.reduced_candidates, solution.reduced_pieces) == (3, 2)
    assert solution.chosen == (3,) and solution.objective == 6.0


def test_an_unreachable_need_is_refused():
    weights = np.array([10.0, 20.0])
    incidence = sp.csr_matrix(np.array([[1, 0]], dtype=bool))
    with pytest.raises(ValueError, match="cannot be met"):
        siting.set_cover(weights, incidence, need=15.0, time_limit_s=30, max_exact_candidates=10)


def test_a_bigger_instance_stays_within_bounds_either_way():
    weights, incidence = _random_instance(7, n=400, m=3000)
    greedy = siting.max_cover(weights, incidence, count=10, time_limit_s=30, max_exact_candidates=0)
    exact = siting.max_cover(weights, incidence, count=10, time_limit_s=30, max_exact_candidates=10_000)
    assert greedy.objective <= exact.objective + 1e-6
    assert exact.objective <= greedy.bound + 1e-6
    assert sum(exact.gains) == pytest.approx(exact.objective)


# -- candidate files -----------------------------------------------------------------------------------------------

def test_candidates_from_csv_with_or_without_a_header_and_a_bom():
    sites = siting.read_candidates("\ufefflon,lat\r\n113.82,34.02\r\n113.83,34.03\r\n\r\n".encode())
    assert sites.tolist() == [[113.82, 34.02], [113.83, 34.03]]
    assert siting.read_candidates("113.82,34.02,extra\n").tolist() == [[113.82, 34.02]]


def test_candidates_from_geojson_points_and_multipoints():
    doc = ('{"type": "FeatureCollection", "features": ['
           '{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [113.82, 34.02]}},'
           '{"type": "Feature", "properties": null, "geometry": {"type": "MultiPoint", '
           '"coordinates": [[113.83, 34.03], [113.84, 34.04]]}}]}')
    assert siting.read_candidates(doc).tolist() == [[113.82, 34.02], [113.83, 34.03], [113.84, 34.04]]


@pytest.mark.parametrize("body,message", [
    ("", "holds no site"),
    ("lon,lat\n", "holds no site"),
    ("113.8\n", "row 1: expected lon,lat"),
    ("113.8,34.0\nabc,34\n", "row 2: lon and lat must be numbers"),
    ("113.8,95\n", "lat must be between -90 and 90"),
    ("113.8,nan\n", "lat must be a number"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "LineString", '
     '"coordinates": [[0, 0], [1, 1]]}}]}', "only Point and MultiPoint"),
    ('{"type": "FeatureCollection"', "not valid GeoJSON"),
    (b"\xff\xfe1,2", "must be UTF-8"),
    ("1,1\n" * (siting.MAX_UPLOADED_CANDIDATES + 1), f"at most {siting.MAX_UPLOADED_CANDIDATES}"),
])
def test_bad_candidate_files_are_refused_saying_what_is_wrong(body, message):
    with pytest.raises(InvalidParameter, match=message):
        siting.read_candidates(body)


def test_default_candidates_leave_out_arterial_junctions_and_arterial_midpoints():
    nodes = {"lon": [1.0, 2.0, 3.0, 4.0], "lat": [0.0, 0.0, 0.0, 0.0], "degree": [3, 4, 2, 3],
             "arterial": [False, True, False, False]}
    midpoints = {"lon": [5.0, 6.0, 7.0], "lat": [1.0, 1.0, 1.0], "street_id": [10, 11, 12],
                 "class": ["residential", "primary", "living_street"]}
    sites = siting.candidate_sites(nodes, midpoints)
    assert sites.lonlat[:, 0].tolist() == [1.0, 4.0, 5.0, 7.0]
    assert sites.source.tolist() == ["intersection", "intersection", "midpoint", "midpoint"]
    assert sites.street_id.tolist() == [-1, -1, 10, 12]


@pytest.mark.parametrize("count,target,message", [
    (None, None, "exactly one of count"),
    (3, 50.0, "exactly one of count"),
    (0, None, "count must be a whole number from 1"),
    (siting.MAX_COUNT + 1, None, "count must be a whole number"),
    (2.5, None, "count must be a whole number"),
    (None, 0.0, "target must be a covered %"),
    (None, 100.5, "target must be a covered %"),
    (None, float("nan"), "target must be a covered %"),
])
def test_count_and_target_are_checked(count, target, message):
    with pytest.raises(InvalidParameter, match=message):
        siting.check_count_or_target(count, target)
