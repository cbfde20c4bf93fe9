"""Vector tiles (/tiles) decoded with mapbox-vector-tile and checked against computations that share nothing with
geoservice.tiles: the tile's lon/lat box from the slippy-map formulas written here, plain SQL counts in that box,
Web Mercator positions from pyproj, and the clustering cells worked out in Python.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict

import mapbox_vector_tile
import pytest
import sqlalchemy as sa
from pyproj import Transformer

from geoservice.tiles import CELLS_MAX_ZOOM, LAYERS, PointCellsCache, TileAddress, tile
from geoservice.vocab import KIND_CODES, STREET_CLASSES
from tests.accounts_helpers import add_user

EXTENT = 4096
CELLS = 8  # the clustering's cells per tile side, as the layer's TileJSON states it (checked below)
TO_MERCATOR = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
HALF_WORLD = 20037508.342789244
# Demo-city anchors: its centre, and a spot east of every demo point (the city spans about 113.79-113.86 E).
CENTRE = (113.826, 34.026)
PLANNED_LON, PLANNED_LAT = 113.93, 34.03


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding a position (OSM's slippy-map formulas)."""
    n = 2**z
    x = (lon + 180) / 360 * n
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int(x), int(y)


def lonlat_box(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """west, south, east, north of a tile in degrees."""
    n = 2**z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


def points_in_tile(conn, z: int, x: int, y: int, *, kinds=None, planned: bool = False) -> list[dict]:
    """Points in the tile by a plain SQL box test: west and north edges in, east and south out."""
    west, south, east, north = lonlat_box(z, x, y)
    rows = conn.execute(sa.text(
        "SELECT id, kind, name, status, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM point "
        "WHERE ST_X(geom) >= :w AND ST_X(geom) < :e AND ST_Y(geom) > :s AND ST_Y(geom) <= :n "
        "AND (:planned OR status <> 'planned') AND (CAST(:kinds AS text[]) IS NULL OR kind = ANY(:kinds))"),
        {"w": west, "e": east, "s": south, "n": north, "planned": planned,
         "kinds": list(kinds) if kinds else None}).mappings()
    return [dict(r) for r in rows]


def decode(body: bytes) -> dict:
    return mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})


def features(client, url: str, layer: str, **kwargs) -> list[dict]:
    response = client.get(url, **kwargs)
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.data
    assert response.mimetype == "application/vnd.mapbox-vector-tile"
    tile = decode(response.data)
    assert list(tile) == [layer]
    assert tile[layer]["extent"] == EXTENT
    return tile[layer]["features"]


def expected_cells(points: list[dict], z: int, x: int, y: int) -> dict[tuple[int, int], dict]:
    """The clustering worked out here: Mercator by pyproj, 8×8 cells, the members' mean position in tile units."""
    size = 2 * HALF_WORLD / 2**z
    x0, y0 = -HALF_WORLD + x * size, HALF_WORLD - y * size
    cells: dict[tuple[int, int], list] = defaultdict(list)
    for p in points:
        mx, my = TO_MERCATOR.transform(p["lon"], p["lat"])
        cells[(min(int((mx - x0) / size * CELLS), CELLS - 1), min(int((y0 - my) / size * CELLS), CELLS - 1))].append(
            (p, (mx - x0) / size * EXTENT, (y0 - my) / size * EXTENT))
    return {cell: {"count": len(members), "kinds": Counter(p["kind"] for p, _, _ in members),
                   "ids": {p["id"] for p, _, _ in members},
                   "at": (sum(px for _, px, _ in members) / len(members),
                          sum(py for _, _, py in members) / len(members))}
            for cell, members in cells.items()}


def cell_of(feature: dict) -> tuple[int, int]:
    px, py = feature["geometry"]["coordinates"]
    return min(int(px * CELLS / EXTENT), CELLS - 1), min(int(py * CELLS / EXTENT), CELLS - 1)


# -- points ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("z", [12, 13, 14, 15, 16])
def test_clusters_count_the_points_in_their_cell_per_kind_at_their_mean_position(client, conn, z):
    x, y = tile_of(*CENTRE, z)
    points = points_in_tile(conn, z, x, y)
    assert points, "the demo city's centre tile holds points"
    expected = expected_cells(points, z, x, y)
    got = features(client, f"/tiles/points/{z}/{x}/{y}.mvt", "points")
    assert sum(f["properties"]["count"] for f in got) == len(points)
    assert len(got) == len(expected)
    for feature in got:
        props = feature["properties"]
        cell = expected[cell_of(feature)]
        assert props["count"] == cell["count"]
        assert {k[2:]: v for k, v in props.items() if k.startswith("n_")} == dict(cell["kinds"])
        px, py = feature["geometry"]["coordinates"]
        assert abs(px - cell["at"][0]) <= 1 and abs(py - cell["at"][1]) <= 1  # tile units are whole numbers
        if props["count"] == 1:
            (only,) = cell["ids"]
            point = next(p for p in points if p["id"] == only)
            assert (props["id"], props["kind"], props["name"], props["status"]) == (
                only, point["kind"], point["name"], point["status"])
        else:
            assert not {"id", "kind", "name", "status"} & set(props)


def test_per_kind_sums_of_a_tile_equal_the_points_per_kind_in_its_box(client, conn):
    z = 13
    x, y = tile_of(*CENTRE, z)
    by_kind = Counter(p["kind"] for p in points_in_tile(conn, z, x, y))
    sums: Counter = Counter()
    for feature in features(client, f"/tiles/points/{z}/{x}/{y}.mvt", "points"):
        sums.update({k[2:]: v for k, v in feature["properties"].items() if k.startswith("n_")})
    assert sums == by_kind
    assert len(by_kind) >= 3


def test_the_tiles_of_a_view_count_every_point_once(client, conn):
    """Adjacent tiles share no point: the tiles over the whole demo city add up to its public points."""
    z = 13
    (west, south, east, north) = conn.execute(sa.text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM point) s")).one()
    (x_min, y_min), (x_max, y_max) = tile_of(west, north, z), tile_of(east, south, z)
    assert (x_max - x_min + 1) * (y_max - y_min + 1) >= 4
    total = sum(f["properties"]["count"] for tx in range(x_min, x_max + 1) for ty in range(y_min, y_max + 1)
                for f in features(client, f"/tiles/points/{z}/{tx}/{ty}.mvt", "points"))
    assert total == conn.execute(sa.text("SELECT count(*) FROM point WHERE status <> 'planned'")).scalar_one()


@pytest.mark.parametrize("z", [17, 18])
def test_from_the_cluster_max_zoom_every_point_is_a_feature(client, conn, z):
    # The densest z-tile of the demo city, so the test sees many points.
    row = conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point WHERE status <> 'planned' ORDER BY id"))
    tiles = Counter(tile_of(lon, lat, z) for lon, lat in row)
    (x, y), _ = tiles.most_common(1)[0]
    points = {p["id"]: p for p in points_in_tile(conn, z, x, y)}
    got = features(client, f"/tiles/points/{z}/{x}/{y}.mvt", "points")
    assert {f["properties"]["id"] for f in got} == set(points) and len(got) == len(points) >= 2
    size = 2 * HALF_WORLD / 2**z
    for feature in got:
        props = feature["properties"]
        point = points[props["id"]]
        assert props == {"id": point["id"], "kind": point["kind"], "name": point["name"],
                         "status": point["status"], "count": 1}
        mx, my = TO_MERCATOR.transform(point["lon"], point["lat"])
        px, py = feature["geometry"]["coordinates"]
        assert abs(px - (mx + HALF_WORLD - x * size) / size * EXTENT) <= 1
        assert abs(py - (HALF_WORLD - y * size - my) / size * EXTENT) <= 1


@pytest.mark.parametrize("z", [12, 15])
def test_kinds_keep_only_those_kinds(client, conn, z):
    x, y = tile_of(*CENTRE, z)
    kinds = ("kiosk", "toilet")
    by_kind = Counter(p["kind"] for p in points_in_tile(conn, z, x, y, kinds=kinds))
    got = features(client, f"/tiles/points/{z}/{x}/{y}.mvt?kinds=toilet,kiosk", "points")
    sums: Counter = Counter()
    for feature in got:
        sums.update({k[2:]: v for k, v in feature["properties"].items() if k.startswith("n_")})
        assert feature["properties"].get("kind", "kiosk") in kinds
    assert sums == by_kind and sum(by_kind.values()) == sum(f["properties"]["count"] for f in got)


def test_an_ocean_tile_is_an_empty_204(client):
    for layer in ("points", "streets", "grids", "districts"):
        response = client.get(f"/tiles/{layer}/12/2048/2048.mvt")  # the Gulf of Guinea at 0°, 0°
        assert response.status_code == 204 and response.data == b""
        assert response.headers["ETag"]


def test_grids_below_their_minimum_zoom_are_empty(client):
    x, y = tile_of(*CENTRE, 9)
    assert client.get(f"/tiles/grids/9/{x}/{y}.mvt").status_code == 204
    x, y = tile_of(*CENTRE, 10)
    assert client.get(f"/tiles/grids/10/{x}/{y}.mvt").status_code == 200


@pytest.fixture(scope="module")
def planned(engine):
    """A committed planned point and a planner's token; removed afterwards."""
    with engine.begin() as c:
        point_id = c.execute(sa.text(
            "INSERT INTO point (name, kind, status, geom) VALUES ('规划岗亭（瓦片测试）', 'kiosk', 'planned', "
            "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) RETURNING id"),
            {"lon": PLANNED_LON, "lat": PLANNED_LAT}).scalar_one()
    _, token = add_user(engine, "planner")
    _, staff = add_user(engine, "kiosk_staff")
    yield {"id": point_id, "planner": {"Authorization": f"Bearer {token}"},
           "staff": {"Authorization": f"Bearer {staff}"}}
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM point WHERE id = :id"), {"id": point_id})


def test_planned_points_are_hidden_from_the_public(client, planned):
    for z in (12, 17):
        x, y = tile_of(PLANNED_LON, PLANNED_LAT, z)
        url = f"/tiles/points/{z}/{x}/{y}.mvt"
        for headers in ({}, planned["staff"]):
            public = client.get(url, headers=headers)
            assert public.status_code == 204 or all(
                f["properties"].get("id") != planned["id"] for f in decode(public.data)["points"]["features"])
        seen = features(client, url, "points", headers=planned["planner"])
        assert [(f["properties"]["count"], f["properties"]["id"], f["properties"]["status"]) for f in seen] == [
            (1, planned["id"], "planned")]
        private = client.get(url, headers=planned["planner"])
        assert private.headers["Cache-Control"].startswith(("private", "no-store"))
        # The public's tag never revalidates a planner's tile.
        assert client.get(url, headers={**planned["planner"], "If-None-Match": public.headers["ETag"]}
                          ).status_code == 200


# -- streets, grids, districts --------------------------------------------------------------------------------

def _meeting_box(conn, table: str, key: str, box: tuple[float, float, float, float], where: str = "true") -> set:
    return set(conn.execute(sa.text(
        f"SELECT {key} FROM {table} WHERE ST_Intersects(geom, ST_MakeEnvelope(:w, :s, :e, :n, 4326)) AND {where}"),
        dict(zip("wsen", box, strict=True))).scalars())


def _buffered(box: tuple[float, float, float, float], z: int) -> tuple[float, float, float, float]:
    """The box grown by the 64-unit buffer (generously: a tenth of a tile covers 64/4096 on either axis)."""
    west, south, east, north = box
    dx, dy = (east - west) / 10, (north - south) / 10
    return west - dx, south - dy, east + dx, north + dy


def test_streets_in_a_tile_are_those_that_meet_it(client, conn):
    z = 15
    x, y = tile_of(*CENTRE, z)
    box = lonlat_box(z, x, y)
    got = features(client, f"/tiles/streets/{z}/{x}/{y}.mvt", "streets")
    ids = {f["properties"]["id"] for f in got}
    inner = _meeting_box(conn, "street", "id", box)
    assert inner and inner <= ids <= _meeting_box(conn, "street", "id", _buffered(box, z))
    rows = {r[0]: r for r in conn.execute(sa.text("SELECT id, name, class FROM street WHERE id = ANY(:ids)"),
                                          {"ids": list(ids)})}
    for feature in got:
        street_id, name, street_class = rows[feature["properties"]["id"]]
        # A property without a value (a nameless segment) is left out of the tile.
        assert feature["properties"] == {k: v for k, v in {"id": street_id, "name": name, "class": street_class}.items()
                                         if v is not None}
        assert feature["geometry"]["type"] in ("LineString", "MultiLineString")


@pytest.mark.parametrize("z", [6, 9, 11])
def test_low_zoom_street_tiles_carry_only_the_major_classes(client, conn, z):
    x, y = tile_of(*CENTRE, z)
    classes = {f["properties"]["class"] for f in features(client, f"/tiles/streets/{z}/{x}/{y}.mvt", "streets")}
    assert classes and classes <= {"trunk", "primary"}
    demo_classes = set(conn.execute(sa.text("SELECT DISTINCT class FROM street")).scalars())
    assert demo_classes - {"trunk", "primary"}, "the demo city has minor streets the low zoom leaves out"


def test_grids_carry_code_name_community_and_squad_and_no_coverage(client, conn):
    z = 14
    x, y = tile_of(*CENTRE, z)
    box = lonlat_box(z, x, y)
    got = features(client, f"/tiles/grids/{z}/{x}/{y}.mvt", "grids")
    codes = {f["properties"]["code"] for f in got}
    inner = _meeting_box(conn, "grid", "code", box)
    assert inner and inner <= codes <= _meeting_box(conn, "grid", "code", _buffered(box, z))
    rows = {r.code: r for r in conn.execute(sa.text(
        "SELECT g.code, g.name, g.community_code, s.name AS squad FROM grid g LEFT JOIN squad s ON s.id = g.squad_id"))}
    for feature in got:
        row = rows[feature["properties"]["code"]]
        assert feature["properties"] == {k: v for k, v in {"code": row.code, "name": row.name,
                                                           "community_code": row.community_code,
                                                           "squad": row.squad}.items() if v is not None}
        assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_districts(client, conn):
    z = 11
    x, y = tile_of(*CENTRE, z)
    got = features(client, f"/tiles/districts/{z}/{x}/{y}.mvt", "districts")
    expected = dict(conn.execute(sa.text(
        "SELECT code, name FROM district WHERE ST_Intersects(geom, ST_MakeEnvelope(:w, :s, :e, :n, 4326))"),
        dict(zip("wsen", lonlat_box(z, x, y), strict=True))).all())
    assert expected and {f["properties"]["code"]: f["properties"]["name"] for f in got} == expected


# -- TileJSON and the index -----------------------------------------------------------------------------------

def test_tilejson(client, conn):
    doc = client.get("/tiles/points.json").get_json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"] == ["http://localhost/tiles/points/{z}/{x}/{y}.mvt"]
    (layer,) = doc["vector_layers"]
    assert layer["id"] == "points" and layer["cluster_cells"] == CELLS
    assert {"count", "id", "kind", "name", "status"} | {f"n_{k}" for k in KIND_CODES} == set(layer["fields"])
    west, south, east, north = doc["bounds"]
    lon, lat, zoom = doc["center"]
    assert west < lon < east and south < lat < north and doc["minzoom"] <= zoom <= doc["maxzoom"]
    (px0, py0, px1, py1) = conn.execute(sa.text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM point) s")).one()
    assert west <= px0 and south <= py0 and px1 <= east and py1 <= north
    kinds = client.get("/tiles/points.json?kinds=toilet").get_json()
    assert kinds["tiles"] == ["http://localhost/tiles/points/{z}/{x}/{y}.mvt?kinds=toilet"]
    streets = client.get("/tiles/streets.json").get_json()
    assert set(streets["vector_layers"][0]["fields"]) == {"id", "name", "class"}
    assert streets["vector_layers"][0]["class_minzoom"]["primary"] == 0
    grids = client.get("/tiles/grids.json").get_json()
    assert set(grids["vector_layers"][0]["fields"]) == {"code", "name", "community_code", "squad"}
    assert grids["minzoom"] == 10


def test_the_index_lists_every_layer(client):
    body = client.get("/tiles").get_json()
    assert [layer["id"] for layer in body["layers"]] == ["points", "streets", "grids", "districts"]
    for layer in body["layers"]:
        assert client.get(layer["tilejson"]).status_code == 200
        assert layer["tiles"].endswith(f"/tiles/{layer['id']}/{{z}}/{{x}}/{{y}}.mvt")


# -- caching --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_a_tile_revalidates_to_an_empty_304(client, engine, encoding):
    z = 14
    x, y = tile_of(*CENTRE, z)
    url = f"/tiles/streets/{z}/{x}/{y}.mvt"
    headers = {"Accept-Encoding": encoding} if encoding else {}
    first = client.get(url, headers=headers)
    assert first.status_code == 200 and first.headers["Cache-Control"].startswith("public")
    body = first.data
    if encoding:
        assert first.headers["Content-Encoding"] == "gzip" and first.headers["ETag"].startswith("W/")
        body = gzip.decompress(body)
    assert body == client.get(url).data
    with engine.connect() as c:
        version = c.execute(sa.text("SELECT version FROM data_version")).scalar_one()
    assert first.headers["ETag"].strip('W/"').startswith(f"v{version}-")
    again = client.get(url, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert "Content-Encoding" not in again.headers
    other = client.get(f"/tiles/streets/{z}/{x + 1}/{y}.mvt", headers={"If-None-Match": first.headers["ETag"]})
    assert other.status_code in (200, 204)


# -- bad requests ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url,status,says", [
    ("/tiles/points/23/0/0.mvt", 400, "z must be a whole number from 0 to 22"),
    ("/tiles/points/-1/0/0.mvt", 400, "z must be"),
    ("/tiles/points/a/0/0.mvt", 400, "z must be"),
    ("/tiles/points/3/8/0.mvt", 400, "x must be a whole number from 0 to 7 at zoom 3"),
    ("/tiles/points/3/0/8.mvt", 400, "y must be a whole number from 0 to 7 at zoom 3"),
    ("/tiles/points/3/0/1.5.mvt", 400, "y must be"),
    ("/tiles/points/0/0/-0.mvt", 400, "y must be"),
    ("/tiles/points/12/3343/1635.mvt?kinds=cafe", 400, "unknown kinds 'cafe'; allowed: kiosk"),
    ("/tiles/points/12/3343/1635.mvt?kinds=", 400, "kinds has an empty value"),
    ("/tiles/points/12/3343/1635.mvt?kind=kiosk", 400, "unknown parameter 'kind'"),
    ("/tiles/streets/12/3343/1635.mvt?kinds=kiosk", 400, "accepts no parameters"),
    ("/tiles/roads/12/3343/1635.mvt", 404, "layers: points, streets, grids, districts"),
    ("/tiles/roads.json", 404, "layers: points, streets, grids, districts"),
    ("/tiles/points.json?kinds=cafe", 400, "unknown kinds"),
    ("/tiles?x=1", 400, "accepts no parameters"),
    ("/tiles/points/12/3343.mvt", 404, "not found"),  # no route at all: still the JSON shape
    ("/tiles/points/12/3343/1635.png", 404, "not found"),
])
def test_bad_requests_are_json_errors_naming_what_is_allowed(client, url, status, says):
    response = client.get(url)
    assert response.status_code == status
    body = response.get_json()
    assert set(body) == {"code", "description"} and says in body["description"]


@pytest.mark.parametrize("z", range(0, CELLS_MAX_ZOOM + 1))
def test_tiles_summed_from_the_kept_cells_equal_tiles_read_from_the_table(conn, z):
    """Both ways of making a clustered tile agree: the process's kept cells and the table read for the tile."""
    cache = PointCellsCache()
    x, y = tile_of(*CENTRE, z)
    for kinds, hidden in ((None, False), (("toilet", "kiosk"), False), (None, True)):
        address = TileAddress(z, x, y)
        read = decode(tile(conn, LAYERS["points"], address, kinds=kinds, show_hidden=hidden))["points"]["features"]
        summed = decode(tile(conn, LAYERS["points"], address, kinds=kinds, show_hidden=hidden, cells=cache)
                        )["points"]["features"]
        assert cache.get(conn) is not None

        def key(feature):
            return cell_of(feature), tuple(sorted(feature["properties"].items()))

        assert [key(f) for f in sorted(read, key=key)] == [key(f) for f in sorted(summed, key=key)]
        for a, b in zip(sorted(read, key=key), sorted(summed, key=key), strict=True):
            assert all(abs(p - q) <= 1 for p, q in zip(a["geometry"]["coordinates"], b["geometry"]["coordinates"],
                                                       strict=True))


def test_kept_cells_follow_a_change_of_the_data(client, conn, engine):
    z = 12
    x, y = tile_of(*CENTRE, z)
    url = f"/tiles/points/{z}/{x}/{y}.mvt"
    before = sum(f["properties"]["count"] for f in features(client, url, "points"))
    with engine.begin() as c:
        point_id = c.execute(sa.text(
            "INSERT INTO point (name, kind, geom) VALUES ('新厕所（瓦片测试）', 'toilet', "
            "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) RETURNING id"), dict(zip(("lon", "lat"), CENTRE, strict=True))
        ).scalar_one()
    try:
        after = features(client, url, "points")
        assert sum(f["properties"]["count"] for f in after) == before + 1
    finally:
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM point WHERE id = :id"), {"id": point_id})
    assert sum(f["properties"]["count"] for f in features(client, url, "points")) == before


def test_a_deep_tile_with_more_points_than_the_cap_is_clustered_not_cut(conn, monkeypatch):
    import geoservice.tiles

    z = 17
    rows = conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point WHERE status <> 'planned'"))
    (x, y), n = Counter(tile_of(lon, lat, z) for lon, lat in rows).most_common(1)[0]
    assert n >= 2
    monkeypatch.setattr(geoservice.tiles, "MAX_POINTS", n - 1)
    got = decode(tile(conn, LAYERS["points"], TileAddress(z, x, y)))["points"]["features"]
    assert sum(f["properties"]["count"] for f in got) == n
    assert all(any(k.startswith("n_") for k in f["properties"]) for f in got)
    assert len(got) < n or any(f["properties"]["count"] == 1 and "id" in f["properties"] for f in got)


def test_a_street_tile_at_the_cap_keeps_the_major_classes(conn, monkeypatch):
    import geoservice.tiles

    z = 14
    x, y = tile_of(*CENTRE, z)
    every = decode(tile(conn, LAYERS["streets"], TileAddress(z, x, y)))["streets"]["features"]
    monkeypatch.setattr(geoservice.tiles, "MAX_FEATURES", 5)
    capped = decode(tile(conn, LAYERS["streets"], TileAddress(z, x, y)))["streets"]["features"]
    assert len(capped) <= 5 < len(every)
    order = STREET_CLASSES
    worst_kept = max(order.index(f["properties"]["class"]) for f in capped)
    assert all(order.index(f["properties"]["class"]) >= worst_kept for f in every
               if f["properties"]["id"] not in {c["properties"]["id"] for c in capped})
