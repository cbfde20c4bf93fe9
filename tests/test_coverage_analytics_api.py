"""The planner's analytics endpoints: the coverage curve, coverage per area, the distance distribution, and "what if".

Each answer is checked against an independent path: the curve and the distance bins against
/api/v1/coverage/streets at the same radius (itself checked against shapely in tests/test_coverage.py); the areas
against shapely — the streets and the uncovered portions the streets endpoint draws, cut by the area outlines in the
city's metric CRS; "what if" against the same point made open.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from pyproj import Transformer
from shapely import wkb
from shapely.geometry import shape

from geoservice import coverage
from tests.accounts_helpers import add_user
from tests.conftest import DEMO_METRIC_CRS

KM = 1e-3 + 1e-9  # answers are rounded to the metre


def get(client, path: str, query: str = "", token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get(f"{path}?{query}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def streets_summary(client, query: str) -> dict:
    return get(client, "/api/v1/coverage/streets", query)["summary"]


# -- the curve ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kinds", ["", "kind=kiosk&kind=toilet"])
def test_curve_agrees_with_the_streets_endpoint_at_every_radius(client, kinds):
    curve = get(client, "/api/v1/coverage/curve", kinds)
    assert [c["radius_m"] for c in curve["curve"]] == list(range(50, 1001, 50))
    pcts = [c["covered_pct"] for c in curve["curve"]]
    assert pcts == sorted(pcts) and 0 < pcts[0] < pcts[-1] <= 100
    for radius in (50, 300, 500, 1000):
        summary = streets_summary(client, f"radius={radius}&{kinds}")
        point = next(c for c in curve["curve"] if c["radius_m"] == radius)
        assert point["covered_pct"] == summary["covered_pct"], radius
        assert point["covered_km"] == pytest.approx(summary["covered_km"], abs=KM)
        assert curve["total_km"] == pytest.approx(summary["total_km"], abs=KM)


def test_curve_takes_its_own_radii_in_walking_mode(client):
    curve = get(client, "/api/v1/coverage/curve", "mode=walk&kind=kiosk&radius=480,120")
    assert curve["mode"] == "walk" and curve["kinds"] == ["kiosk"]
    assert [c["radius_m"] for c in curve["curve"]] == [120, 480]
    for point in curve["curve"]:
        summary = streets_summary(client, f"mode=walk&kind=kiosk&radius={point['radius_m']:g}")
        assert point["covered_pct"] == summary["covered_pct"]
        assert point["covered_km"] == pytest.approx(summary["covered_km"], abs=KM)


# -- per area -----------------------------------------------------------------------------------------------------

def _metric():
    to_metric = Transformer.from_crs("EPSG:4326", DEMO_METRIC_CRS, always_xy=True)
    return lambda geom: shapely.transform(geom, lambda xy: np.column_stack(to_metric.transform(xy[:, 0], xy[:, 1])))


@pytest.mark.parametrize("level", ["subdistrict", "community"])
def test_areas_agree_with_shapely_cutting_streets_and_uncovered_portions(client, conn, level):
    metric = _metric()
    outlines = {code: (name, metric(wkb.loads(bytes(geom)))) for code, name, geom in conn.execute(sa.text(
        f"SELECT code, name, ST_AsBinary(geom) FROM {level}"))}
    streets = [metric(wkb.loads(bytes(g))) for (g,) in conn.execute(sa.text("SELECT ST_AsBinary(geom) FROM street"))]
    query = "radius=400&kind=kiosk&kind=vendor_point&kind=rest_station"
    uncovered = [metric(shape(f["geometry"]))
                 for f in get(client, "/api/v1/coverage/streets", query)["features"]]
    answer = get(client, "/api/v1/coverage/areas", f"level={level}&{query}")
    assert answer["level"] == level
    areas = answer["areas"]
    assert sorted(a["code"] for a in areas) == sorted(outlines)
    for area in areas:
        name, outline = outlines[area["code"]]
        street_km = sum(s.intersection(outline).length for s in streets if s.intersects(outline)) / 1000
        uncovered_km = sum(u.intersection(outline).length for u in uncovered if u.intersects(outline)) / 1000
        assert area["name"] == name
        assert area["street_km"] == pytest.approx(street_km, rel=1e-4, abs=2e-3), area
        # The streets endpoint leaves out uncovered crumbs under a centimetre; they still count in the areas.
        assert area["uncovered_km"] == pytest.approx(uncovered_km, rel=1e-4, abs=5e-3), area
        assert area["covered_km"] + area["uncovered_km"] == pytest.approx(area["street_km"], abs=2 * KM)
        assert area["covered_pct"] == pytest.approx(100 * area["covered_km"] / area["street_km"], abs=0.01)
    pcts = [a["covered_pct"] for a in areas]
    assert pcts == sorted(pcts), "weakest first"
    assert len(set(pcts)) > 1


def test_areas_default_to_subdistricts_at_the_default_radius(client):
    assert get(client, "/api/v1/coverage/areas") == get(client, "/api/v1/coverage/areas",
                                                         "level=subdistrict&radius=500")
    toilets = get(client, "/api/v1/coverage/areas", "kind=toilet")
    assert toilets == get(client, "/api/v1/coverage/areas", "kind=toilet&radius=300")


# -- the distance distribution ------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["", "mode=walk&kind=rest_station&kind=kiosk"])
def test_distance_bins_add_up_and_match_coverage_at_each_edge(client, query):
    answer = get(client, "/api/v1/coverage/distances", query)
    bins = answer["bins"]
    assert [(b["from_m"], b["to_m"]) for b in bins] == [(a, a + 50) for a in range(0, 1000, 50)]
    assert all(b["km"] >= 0 for b in bins) and answer["beyond_km"] >= 0
    assert sum(b["km"] for b in bins) + answer["beyond_km"] == pytest.approx(answer["total_km"], abs=len(bins) * KM)
    # Street length within d of a point is the length covered at radius d.
    for edge in (150, 500, 1000):
        within = sum(b["km"] for b in bins if b["to_m"] <= edge)
        summary = streets_summary(client, f"radius={edge}&{query}")
        assert within == pytest.approx(summary["covered_km"], abs=(edge // 50 + 1) * KM), edge
        assert answer["total_km"] == pytest.approx(summary["total_km"], abs=KM)


# -- what if: planned points --------------------------------------------------------------------------------------

WHAT_IF = [("/api/v1/coverage/streets", "kind=kiosk"), ("/api/v1/coverage/grids", "kind=kiosk"),
           ("/api/v1/coverage/curve", "kind=kiosk"), ("/api/v1/coverage/areas", "kind=kiosk&level=community"),
           ("/api/v1/coverage/distances", "kind=kiosk")]


def _strip(answer):
    """The answer without what it says about the question ("include_planned"), at any depth."""
    if isinstance(answer, dict):
        return {k: _strip(v) for k, v in answer.items() if k != "include_planned"}
    if isinstance(answer, list):
        return [_strip(v) for v in answer]
    return answer


@pytest.fixture(scope="module")
def planner_token(engine) -> str:
    return add_user(engine, "planner")[1]


def test_what_if_counts_planned_points_as_open_ones(client, engine, planned_kiosk, planner_token):
    without = {path: get(client, path, query) for path, query in WHAT_IF}
    with_planned = {path: get(client, path, f"{query}&planned=true", planner_token) for path, query in WHAT_IF}
    assert (with_planned["/api/v1/coverage/streets"]["summary"]["covered_km"]
            > without["/api/v1/coverage/streets"]["summary"]["covered_km"])
    with engine.begin() as c:
        c.execute(sa.text("UPDATE point SET status = 'open' WHERE id = :id"), {"id": planned_kiosk})
    opened = {path: get(client, path, query) for path, query in WHAT_IF}
    for path, _ in WHAT_IF:
        assert _strip(with_planned[path]) == _strip(opened[path]), path
    with engine.begin() as c:
        c.execute(sa.text("UPDATE point SET status = 'planned' WHERE id = :id"), {"id": planned_kiosk})
    # Without what-if a planned point counts for nothing.
    for path, query in WHAT_IF:
        assert get(client, path, query) == without[path], path


def test_without_planned_points_what_if_changes_nothing(client, planner_token):
    for path, query in WHAT_IF:
        assert _strip(get(client, path, f"{query}&planned=true", planner_token)) == _strip(get(client, path, query)), \
            path


@pytest.mark.parametrize(("role", "status"), [(None, 401), ("officer", 403), ("kiosk_staff", 403)])
def test_what_if_is_for_planners_and_admins_only(client, engine, role, status):
    """Planned points are hidden from the public; what-if answers would show where they stand."""
    token = add_user(engine, role)[1] if role else None
    paths = [*WHAT_IF, ("/api/v1/siting", "kind=kiosk&count=1")]
    for path, query in paths:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = client.get(f"{path}?{query}&planned=true", headers=headers)
        assert response.status_code == status, path
        assert "planners and admins" in response.get_json()["description"]
    admin = add_user(engine, "admin")[1]
    assert client.get("/api/v1/coverage/curve?planned=true", headers={"Authorization": f"Bearer {admin}"}
                      ).status_code == 200


# -- bad input ----------------------------------------------------------------------------------------------------

BAD = [
    ("/api/v1/coverage/curve", "radius=0", "radius"),
    ("/api/v1/coverage/curve", "radius=-50", "radius"),
    ("/api/v1/coverage/curve", "radius=abc", "radius"),
    ("/api/v1/coverage/curve", "radius=20000", "radius"),
    ("/api/v1/coverage/curve", "radius=100,,200", "radius"),
    ("/api/v1/coverage/curve", "&".join(f"radius={r}" for r in range(10, 10 * (coverage.MAX_CURVE_RADII + 2), 10)),
     "radius"),
    ("/api/v1/coverage/curve", "kind=boat", "kind"),
    ("/api/v1/coverage/curve", "mode=fly", "mode"),
    ("/api/v1/coverage/curve", "planned=maybe", "planned"),
    ("/api/v1/coverage/curve", "level=community", "level"),
    ("/api/v1/coverage/areas", "level=city", "level"),
    ("/api/v1/coverage/areas", "level=community&level=subdistrict", "level"),
    ("/api/v1/coverage/areas", "radius=nan", "radius"),
    ("/api/v1/coverage/areas", "radius=1&radius=2", "radius"),
    ("/api/v1/coverage/areas", "planned=", "planned"),
    ("/api/v1/coverage/distances", "radius=500", "radius"),
    ("/api/v1/coverage/distances", "kind=kiosk,nothing", "kind"),
    ("/api/v1/coverage/distances", "planned=2", "planned"),
    ("/api/v1/coverage/streets", "planned=perhaps", "planned"),
    ("/api/v1/coverage/grids", "planned=perhaps", "planned"),
]


@pytest.mark.parametrize(("path", "query", "name"), BAD)
def test_bad_input_is_a_400_naming_the_parameter(client, path, query, name):
    response = client.get(f"{path}?{query}")
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"code", "description"}
    assert name in body["description"], body


def test_the_openapi_document_describes_the_analytics(client):
    doc = get(client, "/api/v1/openapi.json")
    for path in ("/api/v1/coverage/curve", "/api/v1/coverage/areas", "/api/v1/coverage/distances",
                 "/api/v1/coverage/streets", "/api/v1/coverage/grids"):
        names = [p["name"] for p in doc["paths"][path]["get"]["parameters"]]
        assert "planned" in names, path
    curve = {p["name"]: p for p in doc["paths"]["/api/v1/coverage/curve"]["get"]["parameters"]}
    assert curve["radius"]["schema"]["type"] == "array" and curve["radius"]["explode"] is True
    areas = {p["name"]: p for p in doc["paths"]["/api/v1/coverage/areas"]["get"]["parameters"]}
    assert areas["level"]["schema"]["enum"] == list(coverage.AREA_LEVELS)
