"""Coverage results as downloads (f=csv|geojson|gpkg): each file holds what the JSON answer holds.

The JSON answers themselves are checked against shapely/networkx in tests/test_coverage.py; here every file is
parsed with an independent reader (the csv module, json + shapely, pyogrio) and compared with them, and the
geometries with the database's own grid outlines and with lengths measured by pyproj.
"""

from __future__ import annotations

import csv
import io
import json

import pyogrio
import pytest
import shapely
import sqlalchemy as sa
from pyproj import Transformer
from shapely import wkb, wkt
from shapely.geometry import shape

from geoservice import downloads

STREETS = "/api/v1/coverage/streets"
GRIDS = "/api/v1/coverage/grids"
QUERY = "radius=400&kind=kiosk&kind=toilet&kind=vendor_point"
TO_METRES = Transformer.from_crs("EPSG:4326", "EPSG:4547", always_xy=True).transform


def _get(client, url: str):
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def _csv_rows(body: bytes) -> list[dict]:
    assert body.startswith(b"\xef\xbb\xbf"), "CSV starts with a UTF-8 byte-order mark for spreadsheet programs"
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def _gpkg(tmp_path, body: bytes, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(body)
    return str(path)


def _grid_outlines(conn) -> dict:
    rows = conn.execute(sa.text("SELECT code, ST_AsBinary(geom) FROM grid")).all()
    return {code: wkb.loads(bytes(geom)) for code, geom in rows}


@pytest.mark.parametrize(("path", "fmt", "media_type", "filename"), [
    (STREETS, "csv", "text/csv; charset=utf-8", "uncovered-streets-straight-400m.csv"),
    (STREETS, "geojson", "application/geo+json", "uncovered-streets-straight-400m.geojson"),
    (STREETS, "gpkg", "application/geopackage+sqlite3", "uncovered-streets-straight-400m.gpkg"),
    (GRIDS, "csv", "text/csv; charset=utf-8", "grid-coverage-straight-400m.csv"),
    (GRIDS, "geojson", "application/geo+json", "grid-coverage-straight-400m.geojson"),
    (GRIDS, "gpkg", "application/geopackage+sqlite3", "grid-coverage-straight-400m.gpkg"),
])
def test_downloads_are_attachments_with_a_name(client, path, fmt, media_type, filename):
    response = _get(client, f"{path}?{QUERY}&f={fmt}")
    assert response.headers["Content-Type"] == media_type
    assert response.headers["Content-Disposition"] == f'attachment; filename="{filename}"'


@pytest.mark.parametrize("path", [STREETS, GRIDS])
def test_json_stays_inline(client, path):
    for url in (f"{path}?{QUERY}", f"{path}?{QUERY}&f=json"):
        response = _get(client, url)
        assert "Content-Disposition" not in response.headers
        assert response.is_json


@pytest.mark.parametrize("path", [STREETS, GRIDS])
@pytest.mark.parametrize("bad", ["xls", "CSV", "shp", "csv,gpkg"])
def test_bad_format_is_a_400_listing_the_formats(client, path, bad):
    response = client.get(f"{path}?radius=500&f={bad}")
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] and "f must be one of json, csv, geojson, gpkg" in body["description"]
    assert repr(bad) in body["description"]


def test_format_is_declared_in_the_openapi_document(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for path in (STREETS, GRIDS):
        params = {p["name"]: p for p in doc["paths"][path]["get"]["parameters"]}
        assert params["f"]["schema"]["enum"] == ["json", "csv", "geojson", "gpkg"]


def test_streets_csv_has_the_features_of_the_json_and_their_measured_length(client):
    answer = _get(client, f"{STREETS}?{QUERY}").get_json()
    rows = _csv_rows(_get(client, f"{STREETS}?{QUERY}&f=csv").data)
    assert [int(r["id"]) for r in rows] == [f["id"] for f in answer["features"]]
    assert len(rows) > 100
    for row, feature in zip(rows, answer["features"], strict=True):
        props = feature["properties"]
        assert (row["name"], row["class"]) == (props["name"], props["class"])
        assert (float(row["length_m"]), float(row["street_length_m"])) == (props["length_m"],
                                                                             props["street_length_m"])
        assert wkt.loads(row["wkt"]).equals(shape(feature["geometry"]))
    # The lengths measured by pyproj in the metric CRS add up to the summary's uncovered km (features exclude only
    # crumbs under 1 cm; coordinates have 7 decimals, about 1 cm).
    measured_m = sum(shapely.transform(wkt.loads(r["wkt"]), TO_METRES, interleaved=False).length for r in rows)
    assert measured_m == pytest.approx(answer["summary"]["uncovered_km"] * 1000, rel=1e-4, abs=2.0)


def test_streets_geojson_is_the_json_answer(client):
    answer = _get(client, f"{STREETS}?{QUERY}&mode=walk").get_json()
    download = json.loads(_get(client, f"{STREETS}?{QUERY}&mode=walk&f=geojson").data)
    assert download == answer
    assert all(shape(f["geometry"]).is_valid for f in download["features"])


def test_streets_geopackage_has_the_features_and_the_totals(client, tmp_path):
    answer = _get(client, f"{STREETS}?{QUERY}&mode=walk").get_json()
    path = _gpkg(tmp_path, _get(client, f"{STREETS}?{QUERY}&mode=walk&f=gpkg").data, "streets.gpkg")
    assert sorted(name for name, _ in pyogrio.list_layers(path)) == ["summary", "uncovered_streets"]
    frame = pyogrio.read_dataframe(path, layer="uncovered_streets")
    assert frame.crs.to_epsg() == 4326
    assert set(frame.geom_type) == {"MultiLineString"}
    assert list(frame["id"]) == [f["id"] for f in answer["features"]]
    assert list(frame["name"]) == [f["properties"]["name"] for f in answer["features"]]
    for geom, feature in zip(frame.geometry, answer["features"], strict=True):
        assert geom.equals(shape(feature["geometry"]))
    totals = pyogrio.read_dataframe(path, layer="summary").iloc[0]
    summary = answer["summary"]
    for key in ("radius_m", "total_km", "covered_km", "uncovered_km", "covered_pct"):
        assert totals[key] == summary[key], key
    assert (totals["mode"], totals["kinds"]) == ("walk", "kiosk,toilet,vendor_point")


def test_nothing_uncovered_gives_empty_files_with_headers(client, tmp_path):
    query = "radius=10000"
    assert _get(client, f"{STREETS}?{query}").get_json()["features"] == []
    body = _get(client, f"{STREETS}?{query}&f=csv").data
    assert body.decode("utf-8-sig") == "id,name,class,length_m,street_length_m,wkt\r\n"
    path = _gpkg(tmp_path, _get(client, f"{STREETS}?{query}&f=gpkg").data, "empty.gpkg")
    assert len(pyogrio.read_dataframe(path, layer="uncovered_streets")) == 0
    assert pyogrio.read_dataframe(path, layer="summary").iloc[0]["covered_pct"] == 100.0


def _grid_props(grid: dict, kinds: tuple[str, ...]) -> dict:
    counts = grid["points_by_kind"]
    return {**{k: grid[k] for k in ("code", "name", "street_km", "covered_km", "uncovered_km", "covered_pct")},
            "points": sum(counts.values()), **{f"points_{k}": counts.get(k, 0) for k in kinds}}


def test_grids_csv_has_every_grid_with_its_outline(client, conn):
    kinds = ("kiosk", "toilet", "vendor_point")
    grids = _get(client, f"{GRIDS}?{QUERY}").get_json()["grids"]
    rows = _csv_rows(_get(client, f"{GRIDS}?{QUERY}&f=csv").data)
    outlines = _grid_outlines(conn)
    assert [r["code"] for r in rows] == [g["code"] for g in grids]
    assert len(rows) == len(outlines) == 400
    assert list(rows[0]) == ["code", "name", "street_km", "covered_km", "uncovered_km", "covered_pct", "points",
                             "points_kiosk", "points_toilet", "points_vendor_point", "wkt"]
    for row, grid in zip(rows, grids, strict=True):
        expected = _grid_props(grid, kinds)
        assert row["name"] == expected["name"]
        for key in ("street_km", "covered_km", "uncovered_km"):
            assert float(row[key]) == expected[key]
        assert (float(row["covered_pct"]) if row["covered_pct"] else None) == expected["covered_pct"]
        for key in ("points", *(f"points_{k}" for k in kinds)):
            assert int(row[key]) == expected[key]
        assert wkt.loads(row["wkt"]).equals(outlines[row["code"]])
    assert any(int(r["points"]) > 0 for r in rows)


def test_grids_geojson_and_geopackage_match_the_json(client, conn, tmp_path):
    query = "radius=600&mode=walk"
    grids = _get(client, f"{GRIDS}?{query}").get_json()["grids"]
    outlines = _grid_outlines(conn)
    collection = json.loads(_get(client, f"{GRIDS}?{query}&f=geojson").data)
    assert [f["properties"] for f in collection["features"]] == [_grid_props(g, downloads.KIND_CODES)
                                                                   for g in grids]
    for feature in collection["features"]:
        assert shape(feature["geometry"]).equals(outlines[feature["properties"]["code"]])
    path = _gpkg(tmp_path, _get(client, f"{GRIDS}?{query}&f=gpkg").data, "grids.gpkg")
    frame = pyogrio.read_dataframe(path, layer="grid_coverage")
    assert frame.crs.to_epsg() == 4326
    assert list(frame["code"]) == [g["code"] for g in grids]
    assert list(frame["uncovered_km"]) == [g["uncovered_km"] for g in grids]
    assert sum(frame["points"]) == sum(sum(g["points_by_kind"].values()) for g in grids)
    for code, geom in zip(frame["code"], frame.geometry, strict=True):
        assert geom.equals(outlines[code])


def test_csv_by_hand():
    result = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": 7, "geometry": {"type": "LineString", "coordinates": [[113.8, 34.0], [113.9, 34.1]]},
         "properties": {"id": 7, "name": "三八路, 北段", "class": "primary", "length_m": 12.5,
                        "street_length_m": 20.0}}],
        "summary": {"mode": "walk", "radius_m": 250.0, "kinds": ["toilet"]}}
    download = downloads.uncovered_streets_file(result, fmt="csv")
    assert download.filename == "uncovered-streets-walk-250m.csv"
    assert download.body.decode("utf-8") == (
        "\ufeffid,name,class,length_m,street_length_m,wkt\r\n"
        '7,"三八路, 北段",primary,12.5,20.0,"MULTILINESTRING ((113.8 34, 113.9 34.1))"\r\n')
