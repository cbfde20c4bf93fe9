"""OGC API – Features under /ogc: the documents, paging, filters, bad input, HTML, OpenAPI, and GDAL reading it."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pyogrio
import pytest
import sqlalchemy as sa
from shapely import box, from_wkb
from shapely.geometry import Point, shape

from geoservice import db
from geoservice.ogc import core
from geoservice.vocab import KIND_CODES, POINT_STATUSES, STREET_CLASSES

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = {f"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/{c}" for c in ("core", "oas30", "html",
                                                                                        "geojson")} | {
    f"http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/{c}"  # Part 4 (tests/test_editing_api.py)
    for c in ("create-replace-delete", "update", "features", "optimistic-locking-etags")}
TABLES = {"districts": ("district", "code"), "subdistricts": ("subdistrict", "code"),
          "communities": ("community", "code"), "grids": ("grid", "code"), "streets": ("street", "id"),
          "points": ("point", "id")}
COLUMNS = {
    "districts": ["code", "name", "updated_at"],
    "subdistricts": ["code", "district_code", "name", "updated_at"],
    "communities": ["code", "subdistrict_code", "name", "updated_at"],
    "grids": ["code", "community_code", "name", "squad_id", "squad", "squad_phone", "officer_name", "officer_phone",
              "area_m2", "updated_at"],
    "streets": ["id", "name", "class", "length_m", "source", "target", "updated_at"],
    "points": ["id", "name", "kind", "amenities", "address", "phone", "opening_hours", "season", "capacity",
               "occupancy", "status", "updated_at", "notice", "live_updated_at"],
}
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def links_by_rel(doc: dict) -> dict[str, list[dict]]:
    rels: dict[str, list[dict]] = {}
    for link in doc["links"]:
        rels.setdefault(link["rel"], []).append(link)
    return rels


def local(href: str) -> str:
    """The path and query of an absolute link, for the test client."""
    parts = urlsplit(href)
    return parts.path + ("?" + parts.query if parts.query else "")


def get_json(client, url: str, media_type: str = "application/json") -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == media_type
    return response.get_json()


def count(conn, sql: str, **params) -> int:
    return conn.execute(sa.text(sql), params).scalar_one()


# --- landing page, conformance, collections ---------------------------------------------------------------------

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "map.city.example", "X-Forwarded-For": "10.0.0.9"}


@pytest.mark.parametrize("trusted_proxies,root", [
    (0, "http://localhost/ogc"),  # forwarded headers are ignored: a client could forge them
    (1, "https://map.city.example/ogc"),  # behind one proxy that terminates HTTPS
])
def test_links_carry_the_public_address_only_behind_a_trusted_proxy(settings, engine, trusted_proxies, root):
    from geoservice.app import create_app

    app = create_app(settings.replace(trusted_proxies=trusted_proxies, trusted_hosts=("map.city.example",)))
    doc = app.test_client().get("/ogc/collections/points/items?limit=1", headers=FORWARDED).get_json()
    hrefs = [link["href"] for link in doc["links"]]
    assert hrefs and all(href.startswith(root + "/collections/points") for href in hrefs), hrefs


@pytest.mark.parametrize("path", ["/ogc", "/ogc/"])
def test_landing_page_links_to_everything(client, path):
    doc = get_json(client, path)
    assert doc["title"] and doc["description"]
    rels = links_by_rel(doc)
    assert rels["self"][0]["type"] == "application/json"
    assert rels["alternate"][0]["type"] == "text/html"
    assert rels["service-desc"][0]["type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert urlsplit(rels["service-desc"][0]["href"]).path == "/ogc/api"
    assert rels["service-doc"][0]["type"] == "text/html"
    assert urlsplit(rels["conformance"][0]["href"]).path == "/ogc/conformance"
    assert urlsplit(rels["data"][0]["href"]).path == "/ogc/collections"
    for link in doc["links"]:
        response = client.get(local(link["href"]))
        assert response.status_code == 200, link
        assert response.content_type.startswith(link["type"].split(";")[0]), link


def test_conformance_declares_core_oas30_html_geojson(client):
    doc = get_json(client, "/ogc/conformance")
    assert set(doc["conformsTo"]) == CONFORMANCE
    assert {"self", "alternate"} <= set(links_by_rel(doc))


def data_bounds(conn, table: str) -> tuple[float, float, float, float]:
    """Bounds of every geometry of the table, computed by shapely (not PostGIS)."""
    geoms = from_wkb([bytes(row[0]) for row in conn.execute(sa.text(f"SELECT ST_AsBinary(geom) FROM {table}"))])
    bounds = [g.bounds for g in geoms]
    return (min(b[0] for b in bounds), min(b[1] for b in bounds), max(b[2] for b in bounds),
            max(b[3] for b in bounds))


def check_collection(doc: dict, collection_id: str, conn) -> None:
    assert doc["id"] == collection_id
    assert re.search(r"[\u4e00-\u9fff]", doc["title"]) and re.search(r"[A-Za-z]", doc["title"])
    assert doc["description"]
    assert doc["itemType"] == "feature"
    assert doc["crs"] == [CRS84]
    spatial = doc["extent"]["spatial"]
    assert spatial["crs"] == CRS84
    # ST_Extent is computed in single precision boxes, so it may enclose the data by a hair
    assert spatial["bbox"][0] == pytest.approx(data_bounds(conn, TABLES[collection_id][0]), abs=1e-4)
    assert "temporal" not in doc["extent"]
    rels = links_by_rel(doc)
    assert {"self", "alternate", "items"} <= set(rels)
    assert {link["type"] for link in rels["items"]} == {"application/geo+json", "text/html"}
    for link in rels["items"]:
        assert urlsplit(link["href"]).path == f"/ogc/collections/{collection_id}/items"


def test_collections_lists_the_six_layers(client, conn):
    doc = get_json(client, "/ogc/collections")
    assert [c["id"] for c in doc["collections"]] == list(TABLES)
    assert {"self", "alternate"} <= set(links_by_rel(doc))
    for collection in doc["collections"]:
        check_collection(collection, collection["id"], conn)


@pytest.mark.parametrize("collection_id", list(TABLES))
def test_collection_describes_itself(client, conn, collection_id):
    doc = get_json(client, f"/ogc/collections/{collection_id}")
    check_collection(doc, collection_id, conn)
    self_link = links_by_rel(doc)["self"][0]
    assert urlsplit(self_link["href"]).path == f"/ogc/collections/{collection_id}"


# --- items and item -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("collection_id", list(TABLES))
def test_items_are_a_geojson_feature_collection(client, conn, collection_id):
    table, key = TABLES[collection_id]
    doc = get_json(client, f"/ogc/collections/{collection_id}/items", "application/geo+json")
    assert doc["type"] == "FeatureCollection"
    total = count(conn, f"SELECT count(*) FROM {table}")
    assert doc["numberMatched"] == total
    assert doc["numberReturned"] == len(doc["features"]) == min(total, core.DEFAULT_LIMIT)
    if collection_id == "points":  # live fields: tagged by its bytes, so no timeStamp to make each answer differ
        assert "timeStamp" not in doc
    else:
        datetime.fromisoformat(doc["timeStamp"])
    expected_ids = list(conn.execute(sa.text(f"SELECT {key} FROM {table} ORDER BY {key} LIMIT 100")).scalars())
    assert [f["id"] for f in doc["features"]] == expected_ids
    for feature in doc["features"]:
        assert feature["type"] == "Feature"
        assert list(feature["properties"]) == COLUMNS[collection_id]
        assert feature["properties"][key] == feature["id"]
        datetime.fromisoformat(feature["properties"]["updated_at"])
    rels = links_by_rel(doc)
    assert rels["self"][0]["type"] == "application/geo+json"
    assert rels["alternate"][0]["type"] == "text/html"
    assert urlsplit(rels["collection"][0]["href"]).path == f"/ogc/collections/{collection_id}"
    assert ("next" in rels) == (total > core.DEFAULT_LIMIT)
    assert "prev" not in rels


def test_point_feature_carries_every_column(client, conn):
    row = conn.execute(sa.text(
        "SELECT id, name, kind, amenities, capacity, ST_X(geom) AS x, ST_Y(geom) AS y FROM point "
        "WHERE name = '三八路便民服务点'")).one()
    doc = get_json(client, f"/ogc/collections/points/items/{row.id}", "application/geo+json")
    assert doc["type"] == "Feature" and doc["id"] == row.id
    props = doc["properties"]
    assert (props["name"], props["kind"], props["amenities"]) == (row.name, row.kind, list(row.amenities))
    assert doc["geometry"]["type"] == "Point"
    assert doc["geometry"]["coordinates"] == pytest.approx([row.x, row.y], abs=1e-7)
    rels = links_by_rel(doc)
    assert urlsplit(rels["self"][0]["href"]).path == f"/ogc/collections/points/items/{row.id}"
    assert rels["self"][0]["type"] == "application/geo+json"
    assert rels["alternate"][0]["type"] == "text/html"
    assert urlsplit(rels["collection"][0]["href"]).path == "/ogc/collections/points"


@pytest.mark.parametrize("collection_id", list(TABLES))
def test_item_geometry_equals_the_database(client, conn, collection_id):
    table, key = TABLES[collection_id]
    fid, wkb = conn.execute(sa.text(f"SELECT {key}, ST_AsBinary(geom) FROM {table} ORDER BY {key} DESC LIMIT 1")).one()
    doc = get_json(client, f"/ogc/collections/{collection_id}/items/{fid}", "application/geo+json")
    assert doc["id"] == fid
    assert shape(doc["geometry"]).equals_exact(from_wkb(bytes(wkb)), tolerance=1e-7)


# --- paging ---------------------------------------------------------------------------------------------------

def walk(client, url: str) -> tuple[list, list[dict]]:
    """Follow ``next`` links from ``url``; the feature ids and the pages seen."""
    ids, pages = [], []
    while url:
        doc = get_json(client, url, "application/geo+json")
        pages.append(doc)
        ids += [f["id"] for f in doc["features"]]
        nexts = links_by_rel(doc).get("next", [])
        url = local(nexts[0]["href"]) if nexts else None
    return ids, pages


def test_walking_next_links_returns_every_point_once_in_id_order(client, conn):
    ids, pages = walk(client, "/ogc/collections/points/items?limit=50")
    expected = list(conn.execute(sa.text("SELECT id FROM point ORDER BY id")).scalars())
    assert ids == expected
    assert len(pages) == -(-len(expected) // 50)
    assert pages[0]["numberMatched"] == len(expected)
    assert all("numberMatched" not in page for page in pages[1:])  # reached by id: the first page said it
    assert all(page["numberReturned"] == 50 for page in pages[:-1])
    for before, page in zip(pages, pages[1:], strict=False):  # next asks after the last id, prev before the first
        assert parse_qs(urlsplit(links_by_rel(before)["next"][0]["href"]).query)["after"] == [
            str(before["features"][-1]["id"])]
        assert parse_qs(urlsplit(links_by_rel(page)["prev"][0]["href"]).query)["before"] == [
            str(page["features"][0]["id"])]
    assert "prev" not in links_by_rel(pages[0])


def test_paging_links_keep_the_filters(client, conn):
    ids, pages = walk(client, "/ogc/collections/points/items?kind=vendor_point&limit=7&bbox=113.7,33.9,113.9,34.1")
    expected = list(conn.execute(sa.text("SELECT id FROM point WHERE kind = 'vendor_point' ORDER BY id")).scalars())
    assert ids == expected and len(expected) == 92
    for page in pages:
        for link in page["links"]:
            if link["rel"] in ("self", "alternate", "next", "prev"):
                query = parse_qs(urlsplit(link["href"]).query)
                assert query["kind"] == ["vendor_point"]
                assert query["bbox"] == ["113.7,33.9,113.9,34.1"]
                assert query["limit"] == ["7"]


def test_an_offset_page_links_by_id_to_its_neighbours(client, conn):
    doc = get_json(client, "/ogc/collections/points/items?limit=30&offset=45", "application/geo+json")
    ids = list(conn.execute(sa.text("SELECT id FROM point ORDER BY id")).scalars())
    assert [f["id"] for f in doc["features"]] == ids[45:75]
    prev = parse_qs(urlsplit(links_by_rel(doc)["prev"][0]["href"]).query)
    assert (prev["before"], prev["limit"]) == ([str(ids[45])], ["30"]) and "offset" not in prev
    before = get_json(client, local(links_by_rel(doc)["prev"][0]["href"]), "application/geo+json")
    assert [f["id"] for f in before["features"]] == ids[15:45]
    after = parse_qs(urlsplit(links_by_rel(doc)["next"][0]["href"]).query)
    assert after["after"] == [str(ids[74])] and "offset" not in after


def test_limit_above_the_maximum_is_capped(client, conn):
    doc = get_json(client, "/ogc/collections/streets/items?limit=20000", "application/geo+json")
    total = count(conn, "SELECT count(*) FROM street")
    assert doc["numberReturned"] == min(total, core.MAX_LIMIT)
    assert parse_qs(urlsplit(links_by_rel(doc)["self"][0]["href"]).query)["limit"] == [str(core.MAX_LIMIT)]
    page = core.items(conn, core.COLLECTIONS["streets"], core.ItemsQuery(limit=core.parse_limit("20000")))
    assert core.parse_limit("20000") == core.MAX_LIMIT and len(page.features) == min(total, core.MAX_LIMIT)


# --- bbox and property filters --------------------------------------------------------------------------------

BBOXES = [(113.80, 34.00, 113.83, 34.03), (113.75, 33.95, 113.80, 34.02), (113.826, 34.026, 113.8261, 34.0261)]


@pytest.mark.parametrize("bbox", BBOXES)
def test_bbox_selects_the_points_shapely_finds_inside(client, conn, bbox):
    area = box(*bbox)
    rows = conn.execute(sa.text("SELECT id, ST_X(geom), ST_Y(geom) FROM point ORDER BY id")).all()
    expected = [pid for pid, x, y in rows if area.intersects(Point(x, y))]
    doc = get_json(client, "/ogc/collections/points/items?limit=10000&bbox=" + ",".join(map(str, bbox)),
                   "application/geo+json")
    assert [f["id"] for f in doc["features"]] == expected
    assert doc["numberMatched"] == len(expected)


def test_bbox_selects_the_grids_shapely_finds_intersecting(client, conn):
    bbox = BBOXES[0]
    rows = conn.execute(sa.text("SELECT code, ST_AsBinary(geom) FROM grid ORDER BY code")).all()
    expected = [code for code, wkb in rows if box(*bbox).intersects(from_wkb(bytes(wkb)))]
    _, pages = walk(client, "/ogc/collections/grids/items?bbox=" + ",".join(map(str, bbox)))
    assert [f["id"] for page in pages for f in page["features"]] == expected
    assert 0 < len(expected) < 400


def python_filter(conn, sql: str, keep) -> list:
    """Ids of the rows ``keep`` accepts, filtered in Python rather than SQL."""
    return [row[0] for row in conn.execute(sa.text(sql)).all() if keep(row)]


@pytest.mark.parametrize(("url", "sql", "keep"), [
    ("points/items?kind=kiosk", "SELECT id, kind FROM point ORDER BY id", lambda r: r[1] == "kiosk"),
    ("points/items?kind=toilet&status=open", "SELECT id, kind, status FROM point ORDER BY id",
     lambda r: r[1] == "toilet" and r[2] == "open"),
    ("points/items?amenity=overnight", "SELECT id, amenities FROM point ORDER BY id", lambda r: "overnight" in r[1]),
    ("points/items?name=三八路便民服务点", "SELECT id, name FROM point ORDER BY id",
     lambda r: r[1] == "三八路便民服务点"),
    ("streets/items?class=primary", "SELECT id, class FROM street ORDER BY id", lambda r: r[1] == "primary"),
    ("streets/items?name=三八路", "SELECT id, name FROM street ORDER BY id", lambda r: r[1] == "三八路"),
    ("grids/items?squad=文博中队", "SELECT g.code, s.name FROM grid g LEFT JOIN squad s ON s.id = g.squad_id "
     "ORDER BY g.code", lambda r: r[1] == "文博中队"),
    ("grids/items?community_code=411002001001", "SELECT code, community_code FROM grid ORDER BY code",
     lambda r: r[1] == "411002001001"),
    ("communities/items?subdistrict_code=411002001", "SELECT code, subdistrict_code FROM community ORDER BY code",
     lambda r: r[1] == "411002001"),
    ("subdistricts/items?district_code=411002", "SELECT code, district_code FROM subdistrict ORDER BY code",
     lambda r: r[1] == "411002"),
])
def test_property_filters_match_an_independent_selection(client, conn, url, sql, keep):
    expected = python_filter(conn, sql, keep)
    doc = get_json(client, f"/ogc/collections/{url}&limit=10000", "application/geo+json")
    assert [f["id"] for f in doc["features"]] == expected
    assert doc["numberMatched"] == len(expected)
    assert expected, "the demo city should have something for every filter tested"


def test_kiosk_count(client, conn):
    doc = get_json(client, "/ogc/collections/points/items?kind=kiosk", "application/geo+json")
    assert doc["numberMatched"] == count(conn, "SELECT count(*) FROM point WHERE kind = 'kiosk'") == 8


# --- bad input ------------------------------------------------------------------------------------------------

ITEMS = "/ogc/collections/points/items"


@pytest.mark.parametrize(("url", "status", "fragment"), [
    (f"{ITEMS}?bbox=113,34,114", 400, "4 numbers"),
    (f"{ITEMS}?bbox=114,34,113,35", 400, "minlon (114.0) must not be greater than maxlon"),
    (f"{ITEMS}?bbox=113,35,114,34", 400, "minlat (35.0) must not be greater than maxlat"),
    (f"{ITEMS}?bbox=113,-95,114,34", 400, "bbox minlat must be between -90 and 90"),
    (f"{ITEMS}?bbox=113,34,190,35", 400, "bbox maxlon must be between -180 and 180"),
    (f"{ITEMS}?bbox=a,34,114,35", 400, "bbox minlon must be a number"),
    (f"{ITEMS}?limit=0", 400, "limit must be at least 1"),
    (f"{ITEMS}?limit=-5", 400, "limit must be at least 1"),
    (f"{ITEMS}?limit=abc", 400, "limit must be a whole number"),
    (f"{ITEMS}?limit=2.5", 400, "limit must be a whole number"),
    (f"{ITEMS}?offset=-1", 400, "offset must be between 0"),
    (f"{ITEMS}?offset=x", 400, "offset must be a whole number"),
    (f"{ITEMS}?offset=99999999999999999999", 400, "offset must be between 0"),
    (f"{ITEMS}?colour=red", 400, "unknown parameter 'colour'; /ogc/collections/points/items accepts: bbox, "
                                 "datetime, limit, offset, after, before, f, kind, status, amenity, name"),
    (f"{ITEMS}?kind=museum", 400, "kind must be one of " + ", ".join(KIND_CODES)),
    (f"{ITEMS}?status=gone", 400, "status must be one of " + ", ".join(POINT_STATUSES)),
    (f"{ITEMS}?kind=kiosk&kind=toilet", 400, "'kind' is given 2 times"),
    (f"{ITEMS}?name=%00", 400, "name must not contain a NUL"),
    (f"{ITEMS}?name=" + "x" * 201, 400, "name must be at most 200 characters"),
    ("/ogc/collections/streets/items?class=motorway", 400, "class must be one of " + ", ".join(STREET_CLASSES)),
    ("/ogc/collections/grids/items?community_code=4110", 400, "community_code must be a 12-digit community code"),
    ("/ogc/collections/grids/items?kind=kiosk", 400, "unknown parameter 'kind'"),
    ("/ogc/collections/rivers", 404, "no collection 'rivers'; collections: districts, subdistricts"),
    ("/ogc/collections/rivers/items", 404, "no collection 'rivers'"),
    ("/ogc/collections/rivers/items/1", 404, "no collection 'rivers'"),
    (f"{ITEMS}/999999", 404, "no feature '999999' in points"),
    (f"{ITEMS}/abc", 404, "its feature ids are positive whole numbers"),
    (f"{ITEMS}/99999999999999999999999", 404, "its feature ids are positive whole numbers"),
    (f"{ITEMS}/1%00", 404, "no feature"),
    ("/ogc/collections/grids/items/411002", 404, "no feature '411002' in grids"),
    ("/ogc/collections/grids/items/abc", 404, "its feature ids are numeric codes"),
    ("/ogc?f=xml", 400, "f must be one of json, html; got 'xml'"),
    (f"{ITEMS}?f=xml", 400, "f must be one of json, html"),
    ("/ogc/collections?f=geojson", 400, "f must be one of json, html"),
    ("/ogc/conformance?limit=5", 400, "unknown parameter 'limit'; /ogc/conformance accepts: f"),
    ("/ogc/nothing-here", 404, ""),
])
def test_bad_input_gets_the_one_error_shape(client, url, status, fragment):
    response = client.get(url)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"code", "description"}
    assert body["code"] == {400: "InvalidParameterValue", 404: "NotFound"}[status]
    assert fragment in body["description"]


def test_errors_are_json_even_when_a_browser_asks(client):
    response = client.get("/ogc/collections/rivers", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 404
    assert set(response.get_json()) == {"code", "description"}


# --- formats: f and the Accept header -------------------------------------------------------------------------

PAGES = ["/ogc", "/ogc/conformance", "/ogc/api", "/ogc/collections", "/ogc/collections/grids",
         "/ogc/collections/grids/items", "/ogc/collections/grids/items/411002001001001"]


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("how", ["f", "accept"])
def test_html_by_f_or_accept(client, path, how):
    if how == "f":
        response = client.get(path + "?f=html")
    else:
        response = client.get(path, headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert html.startswith("<!doctype html>")
    assert '<html lang="en">' in html and "<main>" in html
    if "grids" in path:
        assert "单元网格 Unit grids" in html
    for cdn in ("jsdelivr", "cdnjs", "unpkg", "googleapis"):
        assert cdn not in html
    assert "Accept" in response.headers["Vary"]


@pytest.mark.parametrize(("accept", "media_type"), [
    (None, "application/json"), ("*/*", "application/json"), ("application/json", "application/json"),
    ("text/html;q=0.5, application/json", "application/json"), ("text/html", "text/html"),
])
def test_accept_header_negotiation(client, accept, media_type):
    headers = {"Accept": accept} if accept else {}
    assert client.get("/ogc/collections", headers=headers).mimetype == media_type


def test_items_html_lists_features_with_a_local_leaflet_map(client):
    html = client.get("/ogc/collections/points/items?f=html&kind=kiosk").get_data(as_text=True)
    assert "便民点 Convenience points" in html
    assert "城管执法岗亭" in html
    assert "/static/vendor/leaflet/leaflet.js" in html and "/static/vendor/leaflet/leaflet.css" in html
    assert "1–8" in html and "of 8 matching" in html


def test_html_escapes_the_data(client, conn, monkeypatch):
    evil = '<script>alert("x")</script> & <b>瓜农</b>'
    point_id = conn.execute(sa.text(
        "INSERT INTO point (name, kind, address, geom) VALUES (:name, 'kiosk', :name, "
        "ST_SetSRID(ST_MakePoint(113.82, 34.02), 4326)) RETURNING id"), {"name": evil}).scalar_one()
    # Serve from the test's own transaction, which is rolled back afterwards.
    monkeypatch.setattr(db, "get_connection", lambda: conn)
    for url in (f"/ogc/collections/points/items/{point_id}?f=html",
                "/ogc/collections/points/items?f=html&name=" + evil.replace("&", "%26")):
        html = client.get(url).get_data(as_text=True)
        assert "<script>alert" not in html and "<b>瓜农" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;瓜农&lt;/b&gt;" in html
    feature = client.get(f"/ogc/collections/points/items/{point_id}").get_json()
    assert feature["properties"]["name"] == evil


# --- the OpenAPI document -------------------------------------------------------------------------------------

def resolve(doc: dict, node):
    """Follow a local $ref."""
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        assert node["$ref"].startswith("#/")
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def all_refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_refs(value)


def test_openapi_document_is_structurally_valid(client):
    response = client.get("/ogc/api")
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.oai.openapi+json"
    assert response.mimetype_params == {"version": "3.0"}
    doc = json.loads(response.get_data(as_text=True))
    assert re.fullmatch(r"3\.0\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    assert urlsplit(doc["servers"][0]["url"]).path == "/ogc"
    for ref in all_refs(doc):
        assert resolve(doc, {"$ref": ref}) is not None
    assert {"/", "/conformance", "/api", "/collections"} <= set(doc["paths"])
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        for method, operation in item.items():
            assert operation["operationId"] and operation["summary"]
            success = {"get": "200", "post": "201", "delete": "204"}.get(method, "200")
            assert {success, "400"} <= set(operation["responses"])
            if method != "get":  # Part 4 writes (points, grids) need a login
                assert {"401", "403"} <= set(operation["responses"]) and operation["security"]
            error = resolve(doc, operation["responses"]["400"])
            assert resolve(doc, error["content"]["application/json"]["schema"])["required"] == ["code", "description"]
            templated = set(re.findall(r"{(\w+)}", path))
            for param in (resolve(doc, p) for p in operation["parameters"]):
                assert {"name", "in", "schema"} <= set(param)
                assert param["in"] in (("query", "path") if method == "get" else ("path", "header"))
                if param["in"] == "path":
                    assert param["required"] is True and param["name"] in templated
    operation_ids = [operation["operationId"] for item in doc["paths"].values() for operation in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


@pytest.mark.parametrize("collection_id", list(TABLES))
def test_openapi_declares_each_items_path_with_its_filters(client, collection_id):
    doc = client.get("/ogc/api").get_json()
    assert f"/collections/{collection_id}" in doc["paths"]
    assert f"/collections/{collection_id}/items/{{featureId}}" in doc["paths"]
    operation = doc["paths"][f"/collections/{collection_id}/items"]["get"]
    params = {p["name"]: p for p in (resolve(doc, p) for p in operation["parameters"])}
    collection = core.COLLECTIONS[collection_id]
    assert list(params) == ["bbox", "datetime", "limit", "offset", "after", "before", "f", *collection.filter_names]
    # No maximum: a larger limit is served as the server's maximum (OGC API - Features), never refused.
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "default": 100}
    assert params["bbox"]["schema"]["minItems"] == params["bbox"]["schema"]["maxItems"] == 4
    assert params["f"]["schema"]["enum"] == ["json", "html"]
    if collection_id == "points":
        assert params["kind"]["schema"]["enum"] == list(KIND_CODES)
        assert params["status"]["schema"]["enum"] == list(POINT_STATUSES)
    if collection_id == "streets":
        assert params["class"]["schema"]["enum"] == list(STREET_CLASSES)
    # what the document declares is exactly what the endpoint accepts
    refused = client.get(f"/ogc/collections/{collection_id}/items?undeclared=1").get_json()["description"]
    assert refused.endswith("accepts: " + ", ".join(params))
    feature_schema = resolve(doc, operation["responses"]["200"]["content"]["application/geo+json"]["schema"])
    item_schema = resolve(doc, feature_schema["properties"]["features"]["items"])
    assert list(item_schema["properties"]["properties"]["properties"]) == COLUMNS[collection_id]


def test_openapi_html_documents_the_filters(client):
    html = client.get("/ogc/api?f=html").get_data(as_text=True)
    assert "/collections/points/items" in html and "kiosk, rest_station" in html


# --- GDAL's OAPIF driver against the served app ---------------------------------------------------------------

def test_ogrinfo_lists_the_six_collections(served):
    result = subprocess.run(["ogrinfo", "-ro", f"OAPIF:{served}/ogc"], capture_output=True, text=True, timeout=120,
                            check=True)
    assert re.findall(r"^\d+: (\w+) ", result.stdout, flags=re.M) == list(TABLES)


def test_gdal_filters_by_attribute_and_by_bbox(served, conn):
    def features(*options: str) -> list[int]:
        result = subprocess.run(["ogrinfo", "-ro", "-q", f"OAPIF:{served}/ogc", "points", *options],
                                capture_output=True, text=True, timeout=120, check=True)
        return [int(i) for i in re.findall(r"^  id \(Integer\) = (\d+)$", result.stdout, flags=re.M)]

    kiosks = python_filter(conn, "SELECT id, kind FROM point ORDER BY id", lambda r: r[1] == "kiosk")
    assert features("-where", "kind = 'kiosk'") == kiosks
    bbox = BBOXES[0]
    rows = conn.execute(sa.text("SELECT id, ST_X(geom), ST_Y(geom) FROM point ORDER BY id")).all()
    inside = [pid for pid, x, y in rows if box(*bbox).intersects(Point(x, y))]
    assert features("-spat", *map(str, bbox)) == inside


def test_ogr2ogr_copies_every_point_and_grid(served, conn, tmp_path):
    out = tmp_path / "out.gpkg"
    subprocess.run(["ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{served}/ogc", "points", "grids"],
                   capture_output=True, text=True, timeout=300, check=True)
    points = pyogrio.read_dataframe(out, layer="points").sort_values("id")
    rows = conn.execute(sa.text("SELECT id, name, kind, ST_X(geom) AS x, ST_Y(geom) AS y FROM point ORDER BY id")).all()
    assert len(points) == len(rows) == count(conn, "SELECT count(*) FROM point")
    assert points["id"].tolist() == [r.id for r in rows]
    assert points["name"].tolist() == [r.name for r in rows]
    assert points["kind"].tolist() == [r.kind for r in rows]
    assert points.geometry.x.tolist() == pytest.approx([r.x for r in rows], abs=1e-7)
    assert points.geometry.y.tolist() == pytest.approx([r.y for r in rows], abs=1e-7)

    grids = pyogrio.read_dataframe(out, layer="grids").sort_values("code")
    grid_rows = conn.execute(sa.text("SELECT code, name, ST_AsBinary(geom) FROM grid ORDER BY code")).all()
    assert len(grids) == len(grid_rows) == 400
    assert grids["code"].tolist() == [r.code for r in grid_rows]
    assert grids["name"].tolist() == [r.name for r in grid_rows]
    for geom, row in zip(grids.geometry, grid_rows, strict=True):
        assert geom.equals_exact(from_wkb(bytes(row[2])), tolerance=1e-7)

