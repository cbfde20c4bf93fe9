"""OGC items at any depth: paging by id, the numberMatched rule, the datetime parameter and revalidation (304).

Every listing is compared with a plain SQL listing (or rows filtered in Python), which shares nothing with the
code under test.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import subprocess
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, quote, urlsplit

import pyogrio
import pytest
import sqlalchemy as sa

from geoservice import db
from geoservice.ogc import core, documents, temporal
from tests.conftest import ARTIFACTS, TEST_DB_NAME, serving
from tests.test_ogc import get_json, links_by_rel, local

GEOJSON = "application/geo+json"
TABLES = {"districts": ("district", "code"), "subdistricts": ("subdistrict", "code"),
          "communities": ("community", "code"), "grids": ("grid", "code"), "streets": ("street", "id"),
          "points": ("point", "id")}
PUBLIC = {"point": " WHERE status <> 'planned'"}  # planned points are not the public's
ITEMS = "/ogc/collections/points/items"


def listing(conn, table: str, key: str, where: str = "") -> list:
    condition = PUBLIC.get(table, "")
    if where:
        condition = f"{condition} AND {where}" if condition else f" WHERE {where}"
    return list(conn.execute(sa.text(f"SELECT {key} FROM {table}{condition} ORDER BY {key}")).scalars())


def follow(client, url: str, rel: str = "next") -> list[dict]:
    """The pages met following ``rel`` links from ``url``."""
    pages = []
    while url:
        doc = get_json(client, url, GEOJSON)
        pages.append(doc)
        found = links_by_rel(doc).get(rel, [])
        url = local(found[0]["href"]) if found else None
    return pages


def query_of(link: dict) -> dict[str, list[str]]:
    return parse_qs(urlsplit(link["href"]).query)


# --- paging by id -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("collection_id", "limit"), [("points", 97), ("streets", 1000), ("grids", 23),
                                                      ("communities", 7), ("subdistricts", 1), ("districts", 1)])
def test_next_links_reach_every_id_exactly_once_by_key(client, conn, collection_id, limit):
    table, key = TABLES[collection_id]
    expected = listing(conn, table, key)
    pages = follow(client, f"/ogc/collections/{collection_id}/items?limit={limit}")
    ids = [f["id"] for page in pages for f in page["features"]]
    assert ids == expected and len(set(ids)) == len(ids)
    assert len(pages) == max(1, -(-len(expected) // limit))
    for page in pages[:-1]:
        after = query_of(links_by_rel(page)["next"][0])
        assert after["after"] == [str(page["features"][-1]["id"])] and "offset" not in after
        assert page["numberReturned"] == limit
    assert pages[0]["numberMatched"] == len(expected)
    assert all("numberMatched" not in page for page in pages[1:])  # reached by id: the first page said it
    assert "next" not in links_by_rel(pages[-1])


def test_prev_links_walk_back_the_same_pages(client, conn):
    forward = follow(client, "/ogc/collections/points/items?limit=25&kind=vendor_point")
    backward = follow(client, local(links_by_rel(forward[-1])["self"][0]["href"]), rel="prev")
    assert len(forward) > 1
    assert [[f["id"] for f in p["features"]] for p in reversed(backward)] == \
           [[f["id"] for f in p["features"]] for p in forward]
    # a page asked backwards is full and in id order, whatever the first page held
    before = get_json(client, f"/ogc/collections/points/items?limit=5&before={forward[-1]['features'][0]['id']}",
                      GEOJSON)
    vendor_points = listing(conn, "point", "id", "kind = 'vendor_point'")
    start = vendor_points.index(forward[-1]["features"][0]["id"])
    assert [f["id"] for f in before["features"]] == vendor_points[start - 5:start]


def test_paging_by_key_keeps_filters_bbox_and_datetime(client, conn):
    bbox = (113.78, 33.98, 113.86, 34.06)
    box = ",".join(map(str, bbox))
    pages = follow(client, f"{ITEMS}?status=open&limit=40&datetime=2000-01-01T00:00:00Z/..&bbox={box}")
    expected = listing(conn, "point", "id", f"status = 'open' AND ST_X(geom) BETWEEN {bbox[0]} AND {bbox[2]} "
                                            f"AND ST_Y(geom) BETWEEN {bbox[1]} AND {bbox[3]}")
    assert [f["id"] for page in pages for f in page["features"]] == expected
    assert len(pages) > 2
    for page in pages:
        for link in page["links"]:
            if link["rel"] in ("self", "next", "prev"):
                q = query_of(link)
                assert q["datetime"] == ["2000-01-01T00:00:00Z/.."] and q["status"] == ["open"]
                assert q["bbox"] == [box] and q["limit"] == ["40"]


@pytest.mark.parametrize("collection_id", ["points", "grids"])
def test_a_page_after_the_last_id_is_empty_and_ends_the_walk(client, conn, collection_id):
    table, key = TABLES[collection_id]
    ids = listing(conn, table, key)
    last = get_json(client, f"/ogc/collections/{collection_id}/items?after={ids[-1]}", GEOJSON)
    assert last["features"] == [] and not {"next", "prev"} & set(links_by_rel(last))
    first = get_json(client, f"/ogc/collections/{collection_id}/items?before={ids[0]}", GEOJSON)
    assert first["features"] == []
    # an id between two stored ones (a deleted feature) still pages from where it would be
    middle = get_json(client, f"/ogc/collections/{collection_id}/items?limit=2&after={ids[10]}", GEOJSON)
    assert [f["id"] for f in middle["features"]] == ids[11:13]


def test_keys_and_offset_combine(client, conn):
    ids = listing(conn, "point", "id")
    low, high = ids[100], ids[160]

    def page(query: str) -> dict:
        return get_json(client, f"{ITEMS}?{query}", GEOJSON)

    assert [f["id"] for f in page(f"limit=10&after={low}&offset=5")["features"]] == ids[106:116]
    assert [f["id"] for f in page(f"limit=10&before={high}&offset=5")["features"]] == ids[145:155]
    between = follow(client, f"{ITEMS}?limit=25&after={low}&before={high}")
    assert [f["id"] for p in between for f in p["features"]] == ids[101:160]  # the walk ends at the upper key
    assert all(query_of(links_by_rel(p)["next"][0])["before"] == [str(high)] for p in between[:-1])


@pytest.mark.parametrize(("url", "fragment"), [
    (f"{ITEMS}?after=-1", "after must be the id of a points feature (a whole number from 0 to 2147483647)"),
    (f"{ITEMS}?after=abc", "after must be the id of a points feature"),
    (f"{ITEMS}?before=99999999999", "before must be the id of a points feature"),
    (f"{ITEMS}?after=", "after is empty"),
    ("/ogc/collections/grids/items?after=4110", "after must be the id of a grids feature (a 15-digit code)"),
    ("/ogc/collections/grids/items?before=41100200100100x", "before must be the id of a grids feature"),
])
def test_bad_paging_keys_are_refused(client, url, fragment):
    response = client.get(url)
    assert response.status_code == 400
    assert set(response.get_json()) == {"code", "description"}
    assert fragment in response.get_json()["description"]


def test_a_page_by_key_says_which_ids_it_holds_in_html(client, conn):
    ids = listing(conn, "point", "id")
    html = client.get(f"{ITEMS}?f=html&limit=3&after={ids[4]}").get_data(as_text=True)
    assert f"Features with ids {ids[5]}–{ids[7]}" in html
    assert f'href="http://localhost/ogc/collections/points/items?limit=3&amp;after={ids[7]}&amp;f=html"' in html


@pytest.fixture(scope="module")
def served_with_a_log(settings, app_database_url, engine):
    """The app served as ``geoservice serve`` serves it, with an access log of its own: its base URL and the log."""
    name = f"serve_ogc_paging_{TEST_DB_NAME}.log"
    with serving({"DATABASE_URL": settings.database_url, "GEOSERVICE_APP_DATABASE_URL": app_database_url},
                 log_name=name) as base:
        yield base, ARTIFACTS / name


def test_ogr2ogr_copies_every_collection_through_the_next_links(served_with_a_log, conn, tmp_path):
    served, log = served_with_a_log
    out, start = tmp_path / "city.gpkg", log.stat().st_size
    # Small pages, so that every collection but the districts is read over several pages.
    subprocess.run(["ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{served}/ogc", "-oo", "PAGE_SIZE=37", *TABLES],
                   capture_output=True, text=True, timeout=600, check=True)
    for collection, (table, key) in TABLES.items():
        copied = pyogrio.read_dataframe(out, layer=collection, read_geometry=False, columns=[key])
        assert sorted(copied[key].tolist()) == listing(conn, table, key), collection
    asked = re.findall(r'"GET (/ogc/collections/(\w+)/items\?[^ ]*) HTTP', log.read_text(encoding="utf-8")[start:])
    for collection, (table, key) in TABLES.items():
        pages = [path for path, name in asked if name == collection]
        ids = listing(conn, table, key)
        assert pages and all("offset=" not in path for path in pages), collection
        # GDAL followed every next link: after each full page's last id, and nothing else
        followed = {query_of({"href": path}).get("after", [None])[0] for path in pages} - {None}
        assert followed == {str(ids[37 * k - 1]) for k in range(1, (len(ids) - 1) // 37 + 1)}, collection


# --- numberMatched ----------------------------------------------------------------------------------------------

def test_number_matched_is_exact_up_to_the_cap_and_left_out_beyond(client, conn, monkeypatch):
    kiosks = len(listing(conn, "point", "id", "kind = 'kiosk'"))
    toilets = len(listing(conn, "point", "id", "kind = 'toilet'"))
    everything = len(listing(conn, "point", "id"))
    assert kiosks < toilets < everything
    monkeypatch.setattr(core, "NUMBER_MATCHED_MAX", toilets)
    at_cap = get_json(client, f"{ITEMS}?kind=toilet&limit=2", GEOJSON)
    assert at_cap["numberMatched"] == toilets
    deeper = get_json(client, local(links_by_rel(at_cap)["next"][0]["href"]), GEOJSON)
    assert "numberMatched" not in deeper  # reached by id: the first page said it
    assert get_json(client, f"{ITEMS}?kind=toilet&limit=2&offset=2", GEOJSON)["numberMatched"] == toilets
    beyond = get_json(client, f"{ITEMS}?limit=2", GEOJSON)
    assert "numberMatched" not in beyond and beyond["numberReturned"] == 2 and "next" in links_by_rel(beyond)
    # a first page that holds every match knows the count without counting, however many
    whole = get_json(client, f"{ITEMS}?limit=10000", GEOJSON)
    assert whole["numberMatched"] == whole["numberReturned"] == everything
    assert get_json(client, f"{ITEMS}?kind=kiosk&offset=3", GEOJSON)["numberMatched"] == kiosks
    html = client.get(f"{ITEMS}?f=html&limit=2").get_data(as_text=True)
    assert f"of more than {toilets} matching" in html


def test_the_rule_is_stated_in_the_landing_page_and_the_collections(client):
    assert f"at most {core.NUMBER_MATCHED_MAX:,} features match" in get_json(client, "/ogc")["description"]
    for collection in get_json(client, "/ogc/collections")["collections"]:
        assert f"at most {core.NUMBER_MATCHED_MAX:,} features match" in collection["description"]
        assert "datetime selects features by updated_at" in collection["description"]


# --- datetime ---------------------------------------------------------------------------------------------------

STAMPS = [datetime(2021, 3, 1, 0, 0, tzinfo=UTC), datetime(2021, 3, 1, 12, 0, tzinfo=UTC),
          datetime(2021, 3, 1, 23, 59, 59, 500000, tzinfo=UTC), datetime(2021, 3, 2, 0, 0, tzinfo=UTC),
          datetime(2022, 7, 15, 8, 30, tzinfo=UTC)]


@pytest.fixture()
def dated(conn, monkeypatch):
    """Points with known update times (inserted: the update trigger would stamp now()), served from the test's
    transaction."""
    for number, stamp in enumerate(STAMPS):
        conn.execute(sa.text(
            "INSERT INTO point (name, kind, geom, updated_at) VALUES (:name, 'toilet', "
            "ST_SetSRID(ST_MakePoint(113.82, 34.02), 4326), :stamp)"), {"name": f"dated {number}", "stamp": stamp})
    monkeypatch.setattr(db, "get_connection", lambda: conn)
    return conn


DAY = date(2021, 3, 1)


@pytest.mark.parametrize(("value", "keep"), [
    ("2021-03-01T12:00:00Z", lambda t: t == STAMPS[1]),
    ("2021-03-01T20:00:00+08:00", lambda t: t == STAMPS[1]),
    ("2021-03-01", lambda t: t.astimezone(UTC).date() == DAY),
    ("2021-03-01T00:00:00Z/2021-03-02T00:00:00Z", lambda t: STAMPS[0] <= t <= STAMPS[3]),
    ("2021-03-01/2021-03-01", lambda t: t.astimezone(UTC).date() == DAY),
    ("../2021-03-01T12:00:00Z", lambda t: t <= STAMPS[1]),
    ("/2021-03-01T12:00:00Z", lambda t: t <= STAMPS[1]),
    ("2021-03-01T12:00:00Z/..", lambda t: t >= STAMPS[1]),
    ("2021-03-01T12:00:00.000001Z/", lambda t: t > STAMPS[1]),
    ("2021-03-02/..", lambda t: t >= STAMPS[3]),
    ("../2021-03-01", lambda t: t < STAMPS[3]),
    ("../..", lambda t: True),
    ("2021-03-01T11:59:00-00:01", lambda t: t == STAMPS[1]),
    # offsets PostgreSQL would refuse in a literal (beyond ±15:59), and the calendar's first and last days
    ("2021-03-01T01:00:00+23:00/..", lambda t: t >= datetime(2021, 2, 28, 2, 0, tzinfo=UTC)),
    ("0001-01-01T00:00:00+05:00/9999-12-31", lambda t: True),
])
def test_datetime_selects_by_the_last_change(client, dated, value, keep):
    rows = dated.execute(sa.text("SELECT id, updated_at FROM point WHERE status <> 'planned' ORDER BY id")).all()
    expected = [pid for pid, stamp in rows if keep(stamp)]
    pages = follow(client, f"{ITEMS}?limit=2000&datetime={quote(value)}")
    assert [f["id"] for page in pages for f in page["features"]] == expected
    assert pages[0]["numberMatched"] == len(expected)
    for page in pages:
        assert all(keep(datetime.fromisoformat(f["properties"]["updated_at"])) for f in page["features"])
    assert expected


BAD_DATETIMES = ["2021-13-01", "2021-02-30", "2021-03-01T12:00:00", "2021-03-01T24:00:00Z", "yesterday",
                 "2021-03-01 12:00:00Z", "2022-01-01/2021-01-01", "2021-03-01T12:00:00Z/2021-03-01T11:59:59Z",
                 "..", "2021-01-01/2021-02-01/2021-03-01", "20210301", "2021-03-01T12:00Z", "1/2"]


@pytest.mark.parametrize("value", BAD_DATETIMES)
def test_bad_datetimes_are_refused_naming_the_allowed_forms(client, value):
    response = client.get(f"{ITEMS}?datetime={quote(value)}")
    assert response.status_code == 400
    body = response.get_json()
    assert set(body) == {"code", "description"}
    assert body["description"].startswith("datetime must be an instant (2026-01-01T08:00:00Z, or a date "
                                          "2026-01-01 for the whole UTC day) or an interval start/end")
    assert repr(value) in body["description"]
    assert client.get(f"{ITEMS}?datetime=").status_code == 400


def test_the_declared_pattern_accepts_what_the_parser_accepts():
    good = ["2021-03-01T12:00:00Z", "2021-03-01", "../2021-03-01", "2021-03-01T12:00:00.5+08:00/..", "/.."]
    for value in good:
        assert re.fullmatch(temporal.PATTERN, value) and temporal.parse_datetime(value) is not None
    for value in BAD_DATETIMES:
        with pytest.raises(Exception, match="datetime must be"):
            temporal.parse_datetime(value)


def test_a_collection_without_a_time_answers_every_feature(conn):
    districts = core.COLLECTIONS["districts"]
    timeless = dataclasses.replace(districts, properties=tuple(p for p in districts.properties
                                                               if p.name != temporal.TEMPORAL_PROPERTY))
    assert temporal.temporal_property(timeless) is None
    query = core.ItemsQuery(datetime=temporal.parse_datetime("1999-01-01"))
    page = core.items(conn, timeless, query)
    assert [f["id"] for f in page.features] == listing(conn, "district", "code")
    assert [f["id"] for f in core.items(conn, districts, query).features] == []
    assert "datetime is accepted and every feature answers" in documents.collection(
        "http://x/ogc", "json", timeless, None)["description"]


# --- revalidation: 304 with and without gzip --------------------------------------------------------------------

VERSIONED = ["/ogc/collections", "/ogc/collections/grids", "/ogc/collections/grids/items?limit=5",
             "/ogc/collections/streets/items?class=primary&limit=3"]


def version(engine) -> int:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT version FROM data_version")).scalar_one()


@pytest.mark.parametrize("url", VERSIONED)
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_versioned_answers_revalidate_to_an_empty_304(client, engine, url, encoding):
    headers = {"Accept-Encoding": encoding}
    first = client.get(url, headers=headers)
    assert first.status_code == 200
    tag = first.headers["ETag"]
    if encoding == "gzip":
        assert first.headers["Content-Encoding"] == "gzip" and tag.startswith('W/"')
        assert gzip.decompress(first.data).startswith(b"{")
    assert tag.removeprefix("W/").strip('"').startswith(f"v{version(engine)}-")
    assert first.headers["Last-Modified"] and "must-revalidate" in first.headers["Cache-Control"]
    again = client.get(url, headers={**headers, "If-None-Match": tag})
    assert again.status_code == 304 and again.data == b"" and "Content-Encoding" not in again.headers
    assert client.get(url, headers={**headers, "If-Modified-Since": first.headers["Last-Modified"]}).status_code == 304
    # the other format, chosen by the Accept header at the same address, is another answer
    html = client.get(url, headers={**headers, "Accept": "text/html", "If-None-Match": tag})
    assert html.status_code == 200 and html.mimetype == "text/html"


def test_a_committed_change_gives_grid_items_a_new_tag(client, engine):
    url = "/ogc/collections/grids/items?limit=1"
    first = client.get(url)
    with engine.begin() as c:
        code, phone = c.execute(sa.text("SELECT code, officer_phone FROM grid ORDER BY code LIMIT 1")).one()
        c.execute(sa.text("UPDATE grid SET officer_phone = '0374-7654321' WHERE code = :c"), {"c": code})
    try:
        again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 200 and again.headers["ETag"] != first.headers["ETag"]
        assert again.get_json()["features"][0]["properties"]["officer_phone"] == "0374-7654321"
    finally:
        with engine.begin() as c:
            c.execute(sa.text("UPDATE grid SET officer_phone = :p WHERE code = :c"), {"c": code, "p": phone})


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_points_are_tagged_by_their_bytes_and_a_live_change_shows(client, engine, encoding):
    url = f"{ITEMS}?kind=kiosk"
    headers = {"Accept-Encoding": encoding}
    first = client.get(url, headers=headers)
    tag = first.headers["ETag"]
    assert not tag.removeprefix("W/").strip('"').startswith("v")  # not the data version: occupancy is live
    again = client.get(url, headers={**headers, "If-None-Match": tag})
    assert again.status_code == 304 and again.data == b""
    body = gzip.decompress(first.data) if encoding == "gzip" else first.data
    kiosk = next(f for f in json.loads(body)["features"] if f["properties"]["capacity"])
    point_id, occupancy = kiosk["id"], kiosk["properties"]["occupancy"]
    with engine.begin() as c:  # occupancy does not move the data version, but the answer changes
        c.execute(sa.text("UPDATE point SET occupancy = CASE WHEN coalesce(occupancy, 0) = 0 THEN 1 ELSE 0 END "
                          "WHERE id = :id"), {"id": point_id})
    try:
        changed = client.get(url, headers={**headers, "If-None-Match": tag})
        assert changed.status_code == 200 and changed.headers["ETag"] != tag
    finally:
        with engine.begin() as c:
            c.execute(sa.text("UPDATE point SET occupancy = :o WHERE id = :id"), {"id": point_id, "o": occupancy})


def test_bad_input_is_refused_before_any_304(client):
    tag = client.get("/ogc/collections/grids/items?limit=5").headers["ETag"]
    refused = client.get("/ogc/collections/grids/items?limit=5&datetime=soon", headers={"If-None-Match": tag})
    assert refused.status_code == 400
