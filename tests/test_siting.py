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
import sqlalchemy as sa

from geoservice import coverage, siting
from geoservice.coverage_engine import engine_for
from geoservice.errors import InvalidParameter
from tests.conftest import DEMO_METRIC_CRS

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


def test_greedy_misses_the_optimum_where_it_should_and_an_exchange_or_the_milp_finds_it():
    # Pieces x1, x2, y1, y2 of 100 m and z of 50 m. Site 0 covers x1, y1, z (250 m); site 1 x1, x2; site 2 y1, y2.
    # Greedy takes site 0 first and ends at 350 m with two sites; sites 1 and 2 cover 400 m.
    weights = np.array([100.0, 100.0, 100.0, 100.0, 50.0])
    incidence = sp.csr_matrix(np.array([[1, 0, 1, 0, 1], [1, 1, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=bool))
    chosen, gains = siting._greedy(weights, incidence, count=2)
    assert chosen[0] == 0 and sum(gains) == 350.0
    # Swapping site 0 (150 m covered by it alone) for site 2 (200 m in its place) reaches the optimum.
    exchanged = siting.max_cover(weights, incidence, count=2, time_limit_s=30, max_exact_candidates=0)
    assert (exchanged.method, exchanged.objective) == ("greedy", 400.0)
    assert exchanged.bound >= 400.0
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


@pytest.mark.parametrize("seed", range(5))
def test_pieces_are_grouped_exactly_by_the_sites_that_cover_them(seed):
    rng = np.random.default_rng(seed)
    dense = rng.random((2000, 40)) < 0.05  # many rows repeat, some are empty
    rows = sp.csr_matrix(dense)
    rows.sort_indices()
    label = siting._same_rows(rows)
    by_content: dict[bytes, int] = {}
    expected = np.array([by_content.setdefault(np.flatnonzero(r).tobytes(), len(by_content)) for r in dense])
    assert len(set(zip(label.tolist(), expected.tolist(), strict=True))) == len(set(label.tolist())) == len(
        by_content)


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
                 "arterial": [False, True, False]}
    sites = siting.candidate_sites(nodes, midpoints)
    assert sites.lonlat[:, 0].tolist() == [1.0, 4.0, 5.0, 7.0]
    assert sites.source.tolist() == ["intersection", "intersection", "midpoint", "midpoint"]
    assert sites.street_id.tolist() == [-1, -1, 10, 12]


@pytest.mark.parametrize("count,target,message", [
    (None, None, "give count"),
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


# -- the demo city ---------------------------------------------------------------------------------------------------

# A corner of the demo city with uncovered streets at 300 m: the industrial south-west kept free of points.
SMALL_RADIUS_M = 300.0


def _uncovered_box(conn) -> tuple[float, float, float, float]:
    """A box of about 1.2 km around the middle of the longest uncovered street stretch at SMALL_RADIUS_M."""
    result = coverage.uncovered_streets(conn, radius_m=SMALL_RADIUS_M, metric_crs=DEMO_METRIC_CRS)
    longest = max(result["features"], key=lambda f: f["properties"]["length_m"])
    coords = np.array([c for line in longest["geometry"]["coordinates"] for c in line] if
                      longest["geometry"]["type"] == "MultiLineString" else longest["geometry"]["coordinates"])
    lon, lat = coords.mean(axis=0)
    return (lon - 0.0065, lat - 0.0055, lon + 0.0065, lat + 0.0055)


def _real_instance(conn, *, size: int):
    """The engine's instance for ``size`` default candidate sites inside the uncovered box."""
    engine = engine_for(conn, metric_crs=DEMO_METRIC_CRS)
    box = _uncovered_box(conn)
    sites = siting._in_area(conn, siting.default_candidates(engine), district=None, bbox=box)
    instance = engine.siting_instance(radius_m=SMALL_RADIUS_M, kinds=siting.check_kinds(None), mode="straight",
                                      sites_lonlat=sites.lonlat, bbox=box)
    useful = np.flatnonzero(np.asarray(instance.incidence.sum(axis=1)).ravel() > 0)
    assert len(useful) >= size, "the box should hold enough useful candidate sites"
    picked = useful[np.linspace(0, len(useful) - 1, size).round().astype(int)]
    return instance.weights, instance.incidence[picked], box


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_on_real_streets_the_milp_finds_the_brute_force_optimum(conn, count):
    weights, incidence, _ = _real_instance(conn, size=12)
    best = _best_of(weights, incidence, count)
    exact = siting.max_cover(weights, incidence, count=count, time_limit_s=30, max_exact_candidates=10_000)
    assert exact.optimal and exact.objective == pytest.approx(best, rel=1e-9)
    greedy = siting.max_cover(weights, incidence, count=count, time_limit_s=30, max_exact_candidates=0)
    assert (1 - 1 / math.e) * best - 1e-6 <= greedy.objective <= best + 1e-6 <= greedy.bound + 2e-6


def test_on_real_streets_set_covering_is_minimal(conn):
    weights, incidence, _ = _real_instance(conn, size=12)
    reachable = float(weights[np.asarray(incidence.sum(axis=0)).ravel() > 0].sum())
    for share in (0.5, 0.8, 1.0):
        solution = siting.set_cover(weights, incidence, need=share * reachable, time_limit_s=30,
                                    max_exact_candidates=10_000)
        assert len(solution.chosen) == _fewest_for(weights, incidence, share * reachable)


def _insert_planned(conn, features: list[dict]) -> None:
    for f in features:
        conn.execute(sa.text("INSERT INTO point (name, kind, status, geom) VALUES (:name, 'kiosk', 'planned', "
                             "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"),
                     {"name": f"规划岗亭 {f['properties']['rank']}", "lon": f["properties"]["lon"],
                      "lat": f["properties"]["lat"]})


@pytest.mark.parametrize("mode", ["straight", "walk"])
def test_the_covered_share_after_accepting_the_sites_is_what_coverage_then_says(conn, mode):
    box = _uncovered_box(conn)
    result = siting.suggest_sites(conn, radius_m=SMALL_RADIUS_M, mode=mode, count=4, bbox=box,
                                  metric_crs=DEMO_METRIC_CRS, time_limit_s=30)
    summary = result["summary"]
    assert 1 <= summary["sites"] <= 4 and summary["objective_km"] > 0
    gains = [f["properties"]["gain_km"] for f in result["features"]]
    assert sum(gains) == pytest.approx(summary["objective_km"], abs=1e-3)
    assert gains == sorted(gains, reverse=True)
    before = coverage.uncovered_streets(conn, radius_m=SMALL_RADIUS_M, mode=mode, bbox=box, metric_crs=DEMO_METRIC_CRS)
    assert summary["covered_pct"] == before["summary"]["covered_pct"]
    _insert_planned(conn, result["features"])
    after = coverage.uncovered_streets(conn, radius_m=SMALL_RADIUS_M, mode=mode, bbox=box, metric_crs=DEMO_METRIC_CRS,
                                       include_planned=True)
    assert after["summary"]["covered_pct"] == pytest.approx(summary["covered_pct_after"], abs=0.011)
    assert after["summary"]["covered_km"] - before["summary"]["covered_km"] == pytest.approx(
        summary["objective_km"], abs=0.002)
    # Open points only (the default), the plan changes nothing yet.
    unchanged = coverage.uncovered_streets(conn, radius_m=SMALL_RADIUS_M, mode=mode, bbox=box,
                                           metric_crs=DEMO_METRIC_CRS)
    assert unchanged["summary"]["covered_km"] == before["summary"]["covered_km"]


def test_a_target_is_reached_with_the_fewest_sites_or_said_to_be_out_of_reach(conn):
    box = _uncovered_box(conn)
    ask = {"radius_m": SMALL_RADIUS_M, "bbox": box, "metric_crs": DEMO_METRIC_CRS, "time_limit_s": 30}
    now = siting.suggest_sites(conn, count=1, **ask)["summary"]["covered_pct"]
    target = now + (100 - now) / 2
    result = siting.suggest_sites(conn, target_pct=target, **ask)
    summary = result["summary"]
    assert summary["covered_pct_after"] >= target - 0.01
    assert result["features"][-1]["properties"]["covered_pct"] == summary["covered_pct_after"]
    if summary["optimal"]:  # one site fewer, chosen as well as possible, falls short
        fewer = siting.suggest_sites(conn, count=summary["sites"] - 1, **ask)["summary"] if summary["sites"] > 1 \
            else {"covered_pct_after": now}
        assert fewer["covered_pct_after"] < target
    assert summary["target_reached"] is True and summary["problem"] == "set_cover"
    # At most one site: the best one when the target needs more.
    capped = siting.suggest_sites(conn, target_pct=target, count=1, **ask)["summary"]
    if summary["sites"] > 1:
        assert (capped["problem"], capped["sites"], capped["target_reached"]) == ("max_cover", 1, False)
    # Beyond what every candidate together reaches: the fewest sites reaching that most, and said so.
    centre = np.array([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]])
    beyond = siting.suggest_sites(conn, target_pct=100.0, candidates=centre, **ask)["summary"]
    assert beyond["target_reached"] is False and beyond["most_pct"] < 100
    assert beyond["covered_pct_after"] == pytest.approx(beyond["most_pct"], abs=0.01)


@pytest.mark.parametrize("mode", ["straight", "walk"])
def test_sites_left_out_before_the_instance_could_not_have_covered_anything(conn, mode):
    engine = engine_for(conn, metric_crs=DEMO_METRIC_CRS)
    box = _uncovered_box(conn)
    sites = siting._in_area(conn, siting.default_candidates(engine), district=None, bbox=box)
    kinds = siting.check_kinds(None)
    instance = engine.siting_instance(radius_m=SMALL_RADIUS_M, kinds=kinds, mode=mode, sites_lonlat=sites.lonlat,
                                      bbox=box)
    useful = set(np.flatnonzero(np.asarray(instance.incidence.sum(axis=1)).ravel() > 0).tolist())
    near = set(siting._near_uncovered(engine, sites.lonlat, mode=mode, kinds=kinds, radius=SMALL_RADIUS_M,
                                      include_planned=False).tolist())
    assert useful and useful <= near


def test_default_candidates_stand_off_the_arterials_and_inside_the_district(conn):
    engine = engine_for(conn, metric_crs=DEMO_METRIC_CRS)
    sites = siting._in_area(conn, siting.default_candidates(engine), district="411002", bbox=None)
    assert len(sites) > 100
    mids = sites.street_id[sites.source == "midpoint"]
    classes = dict(conn.execute(sa.text("SELECT id, class FROM street WHERE id = ANY(:ids)"),
                                {"ids": mids.tolist()}).all())
    assert not {classes[i] for i in mids.tolist()} & {"trunk", "primary", "secondary"}
    # no intersection candidate is an end of an arterial street
    arterial_ends = conn.execute(sa.text(
        "SELECT ST_X(g), ST_Y(g) FROM street, LATERAL (VALUES (ST_StartPoint(geom)), (ST_EndPoint(geom))) AS e(g) "
        "WHERE class IN ('trunk', 'primary', 'secondary')")).all()
    ends = {(round(x, 6), round(y, 6)) for x, y in arterial_ends}
    junctions = sites.lonlat[sites.source == "intersection"]
    assert len(junctions) and not {(round(x, 6), round(y, 6)) for x, y in junctions} & ends
    outside = conn.execute(sa.text(
        "SELECT count(*) FROM unnest(CAST(:lon AS float8[]), CAST(:lat AS float8[])) AS t(lon, lat), district d "
        "WHERE d.code = '411002' AND NOT ST_Covers(d.geom, ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326))"),
        {"lon": sites.lonlat[:, 0].tolist(), "lat": sites.lonlat[:, 1].tolist()}).scalar_one()
    assert outside == 0


@pytest.mark.parametrize("ask,message", [
    ({"count": 3, "kinds": ["kiosk", "spaceship"]}, "unknown kind 'spaceship'"),
    ({"count": 3, "radius_m": -5}, "radius must be"),
    ({"count": 3, "mode": "fly"}, "mode must be one of straight, walk"),
    ({"count": 3, "district": "12"}, "district must be a 6-digit"),
    ({"count": 3, "bbox": (114, 34, 113, 35)}, "bbox must be"),
    ({"count": 3, "candidates": np.array([[113.8, 134.0]])}, "candidate 1: lat must be between"),
    ({}, "give count"),
])
def test_bad_questions_name_the_parameter(conn, ask, message):
    with pytest.raises(InvalidParameter, match=message):
        siting.suggest_sites(conn, metric_crs=DEMO_METRIC_CRS, time_limit_s=30, **ask)


def test_uploaded_candidates_are_the_only_sites_considered(conn):
    box = _uncovered_box(conn)
    lon, lat = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    mine = np.array([[lon, lat], [lon + 0.003, lat], [box[0] - 1.0, box[1] - 1.0]])
    result = siting.suggest_sites(conn, radius_m=SMALL_RADIUS_M, count=3, bbox=box, candidates=mine,
                                  metric_crs=DEMO_METRIC_CRS, time_limit_s=30)
    chosen = {(f["properties"]["lon"], f["properties"]["lat"]) for f in result["features"]}
    assert chosen <= {(round(x, 7), round(y, 7)) for x, y in mine[:2]}
    assert {f["properties"]["source"] for f in result["features"]} == {"uploaded"}
    assert result["summary"]["candidates"] == 3 and result["summary"]["candidates_from"] == "uploaded"


# -- the API and the command -------------------------------------------------------------------------------------------

def _box_param(box) -> str:
    return ",".join(f"{v:.6f}" for v in box)


def test_the_api_suggests_sites_and_gives_them_as_files(client, conn):
    box = _box_param(_uncovered_box(conn))
    response = client.get(f"/api/v1/siting?count=3&radius={SMALL_RADIUS_M:g}&bbox={box}")
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/geo+json"
    body = response.get_json()
    assert 1 <= len(body["features"]) <= 3
    assert body["summary"]["method"] in ("milp", "greedy") and body["summary"]["problem"] == "max_cover"
    assert [f["properties"]["rank"] for f in body["features"]] == list(range(1, len(body["features"]) + 1))
    csv_file = client.get(f"/api/v1/siting?count=3&radius={SMALL_RADIUS_M:g}&bbox={box}&f=csv")
    assert csv_file.status_code == 200 and "attachment" in csv_file.headers["Content-Disposition"]
    rows = csv_file.get_data().decode("utf-8-sig").strip().splitlines()
    assert rows[0].split(",")[:3] == ["rank", "lon", "lat"] and len(rows) == len(body["features"]) + 1
    geojson_file = client.get(f"/api/v1/siting?count=3&radius={SMALL_RADIUS_M:g}&bbox={box}&f=geojson")
    assert geojson_file.headers["Content-Disposition"].endswith('.geojson"')
    assert [f["geometry"] for f in geojson_file.get_json()["features"]] == [f["geometry"] for f in body["features"]]


def test_the_api_takes_a_candidate_file(client, conn):
    box = _uncovered_box(conn)
    lon, lat = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    body = f"lon,lat\n{lon},{lat}\n{lon + 0.003},{lat}\n"
    response = client.post(f"/api/v1/siting?count=2&radius={SMALL_RADIUS_M:g}&bbox={_box_param(box)}", data=body,
                           content_type="text/csv")
    assert response.status_code == 200, response.get_json()
    assert {f["properties"]["source"] for f in response.get_json()["features"]} == {"uploaded"}
    geojson = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [lon, lat]}}]}
    response = client.post(f"/api/v1/siting?count=1&radius={SMALL_RADIUS_M:g}&bbox={_box_param(box)}",
                           json=geojson)
    assert response.status_code == 200 and response.get_json()["summary"]["candidates"] == 1


@pytest.mark.parametrize("query,body,needle", [
    ("count=0", None, "count must be between 1 and"),
    ("target=0", None, "target must be greater than 0"),
    ("target=101", None, "target must be between"),
    ("count=2&kind=spaceship", None, "unknown kind 'spaceship'"),
    ("count=2&mode=fly", None, "mode must be one of straight, walk"),
    ("count=2&radius=0", None, "radius must be greater than 0"),
    ("count=2&district=abc", None, "district must be a 6-digit"),
    ("count=2&bbox=1,2,3", None, "bbox must be minlon,minlat,maxlon,maxlat"),
    ("count=2&f=gpkg", None, "f must be one of json, csv, geojson"),
    ("count=2&planned=maybe", None, "planned must be true or false"),
    ("count=2&colour=red", None, "unknown parameter 'colour'"),
    ("count=2", "113.8\n", "candidates row 1: expected lon,lat"),
    ("count=2", "", "candidates holds no site"),
])
def test_bad_requests_are_400_naming_the_parameter(client, query, body, needle):
    if body is None:
        response = client.get(f"/api/v1/siting?{query}")
    else:
        response = client.post(f"/api/v1/siting?{query}", data=body, content_type="text/csv")
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()
    assert set(error) == {"code", "description"} and needle in error["description"]


def test_an_unknown_district_is_404(client):
    response = client.get("/api/v1/siting?count=2&district=999999")
    assert response.status_code == 404 and "999999" in response.get_json()["description"]


def test_the_command_prints_a_table_and_writes_files(test_database_url, engine, conn, tmp_path):
    from tests.test_cli import run_cli

    env = {"DATABASE_URL": test_database_url}
    box = _box_param(_uncovered_box(conn))
    result = run_cli("siting", "--count", "2", "--radius", f"{SMALL_RADIUS_M:g}", "--bbox", box, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["#", "lon", "lat"] and "candidates: +" in lines[-1]
    out = tmp_path / "sites.csv"
    result = run_cli("siting", "--count", "2", "--radius", f"{SMALL_RADIUS_M:g}", "--bbox", box, "--format", "csv",
                     "--out", str(out), env=env)
    assert result.returncode == 0 and out.read_bytes().startswith("\ufeffrank,lon,lat".encode())
    candidates = tmp_path / "mine.csv"
    lon, lat = (float(v) for v in box.split(",")[:2])
    candidates.write_text(f"{lon + 0.006},{lat + 0.005}\n")
    result = run_cli("siting", "--count", "1", "--radius", f"{SMALL_RADIUS_M:g}", "--bbox", box, "--candidates",
                     str(candidates), "--format", "geojson", env=env)
    assert result.returncode == 0, result.stderr
    assert '"source": "uploaded"' in result.stdout


@pytest.mark.parametrize("args,needle", [
    (("--count", "0"), "count must be a whole number from 1"),
    (("--count", "2", "--kind", "spaceship"), "unknown kind 'spaceship'"),
    (("--count", "2", "--bbox", "1,2"), "bbox must be minlon,minlat,maxlon,maxlat"),
])
def test_the_command_refuses_bad_input_in_one_line(test_database_url, engine, args, needle):
    from tests.test_cli import run_cli

    result = run_cli("siting", *args, env={"DATABASE_URL": test_database_url})
    assert result.returncode == 1
    assert result.stderr.startswith("geoservice: ") and len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr


def test_the_served_app_solves_exactly_in_its_worker(served, conn):
    """Under gunicorn (threaded workers) the MILP's child process is forked, answers and is reaped."""
    import json
    import urllib.request

    box = _box_param(_uncovered_box(conn))
    with urllib.request.urlopen(f"{served}/api/v1/siting?count=3&radius={SMALL_RADIUS_M:g}&bbox={box}",
                                timeout=120) as response:
        body = json.load(response)
    summary = body["summary"]
    assert body["features"] and summary["optimal"] and summary["gap"] == 0
    # proven by the MILP in the forked child, unless greedy's own bound proved it first
    assert summary["method"] == "milp" or summary["undominated_candidates"] is None
