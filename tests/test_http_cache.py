"""HTTP validators: answers tagged by the data version come back as empty 304s until the data changes.

The tags are checked against what the database says (the version row), through the gzip layer, and against a
committed change; versioned static addresses are kept for a year, unversioned ones revalidated.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.accounts_helpers import add_user

STATIC = Path(__file__).resolve().parent.parent / "static"
VERSIONED = ["/api/v1/layers/grids", "/api/v1/layers/streets?bbox=113.80,34.00,113.84,34.04",
             "/api/v1/coverage/grids?radius=300", "/api/v1/coverage/curve?kind=kiosk",
             "/api/v1/coverage/grid-gaps"]


def version(engine) -> int:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT version FROM data_version")).scalar_one()


@pytest.mark.parametrize("url", VERSIONED)
def test_a_versioned_answer_is_tagged_by_the_data_version_and_revalidates_to_an_empty_304(client, engine, url):
    first = client.get(url)
    assert first.status_code == 200
    etag = first.headers["ETag"].strip('"')
    assert etag.startswith(f"v{version(engine)}-")
    assert first.headers["Last-Modified"]
    assert "must-revalidate" in first.headers["Cache-Control"]
    again = client.get(url, headers={"If-None-Match": f'"{etag}"'})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    other = client.get(url + ("&" if "?" in url else "?") + "limit=1" if "layers" in url else url,
                       headers={"If-None-Match": '"v0-0000000000000000"'})
    assert other.status_code == 200


def test_a_gzipped_answer_has_a_weak_tag_that_still_gets_its_304(client):
    url = "/api/v1/layers/grids"
    first = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert first.headers["Content-Encoding"] == "gzip"
    assert first.headers["ETag"].startswith('W/"v')
    assert gzip.decompress(first.data).startswith(b"{")
    again = client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert "Content-Encoding" not in again.headers


def test_if_modified_since_alone_also_revalidates(client):
    first = client.get("/api/v1/layers/districts")
    again = client.get("/api/v1/layers/districts", headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert again.status_code == 304


def test_a_committed_change_gives_a_new_tag_and_a_full_answer(client, engine):
    url = "/api/v1/layers/grids"
    first = client.get(url)
    with engine.begin() as c:
        code, phone = c.execute(sa.text("SELECT code, officer_phone FROM grid ORDER BY code LIMIT 1")).one()
        c.execute(sa.text("UPDATE grid SET officer_phone = '0374-7654321' WHERE code = :c"), {"c": code})
    try:
        again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 200
        assert again.headers["ETag"] != first.headers["ETag"]
        assert again.headers["ETag"].strip('"').startswith(f"v{version(engine)}-")
        assert "0374-7654321" in again.get_data(as_text=True)
    finally:
        with engine.begin() as c:
            c.execute(sa.text("UPDATE grid SET officer_phone = :p WHERE code = :c"), {"c": code, "p": phone})


def test_points_carry_live_fields_so_their_tag_is_the_content(client, engine):
    url = "/api/v1/layers/points?bbox=113.80,34.00,113.85,34.05"
    first = client.get(url)
    etag = first.headers["ETag"].strip('"')
    assert not etag.startswith("v")
    assert client.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    shown = next(f["properties"] for f in first.get_json()["features"] if f["properties"]["capacity"])
    point_id, occupancy = shown["id"], shown["occupancy"]
    with engine.begin() as c:  # occupancy does not move the data version, but the answer changes
        c.execute(sa.text("UPDATE point SET occupancy = CASE WHEN coalesce(occupancy, 0) = 0 THEN 1 ELSE 0 END "
                          "WHERE id = :id"), {"id": point_id})
    try:
        changed = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
        assert changed.status_code == 200 and changed.headers["ETag"] != first.headers["ETag"]
    finally:
        with engine.begin() as c:
            c.execute(sa.text("UPDATE point SET occupancy = :o WHERE id = :id"), {"id": point_id, "o": occupancy})


def test_pages_address_static_files_by_content_and_those_are_kept_for_a_year(client):
    html = client.get("/").get_data(as_text=True)
    addresses = re.findall(r'(?:src|href)="(/static/[^"?]+)\?v=([0-9a-f]+)"', html)
    assert any(a.endswith("js/common.js") for a, _ in addresses)
    for address, digest in addresses:
        body = (STATIC / address.removeprefix("/static/")).read_bytes()
        assert digest == hashlib.blake2b(body, digest_size=16).hexdigest()[:len(digest)]
        response = client.get(f"{address}?v={digest}")
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    stale = client.get("/static/js/common.js?v=000000000000")
    assert stale.headers["Cache-Control"] == "no-cache"
    plain = client.get("/static/js/common.js")
    assert plain.headers["Cache-Control"] == "no-cache"
    assert client.get("/static/js/common.js", headers={"If-None-Match": plain.headers["ETag"]}).status_code == 304


def test_a_planners_answer_is_kept_by_no_cache_and_never_the_publics_304(client, engine):
    # A logged-in user's answers are never stored (geoservice.web.auth: a shared office computer keeps nothing a
    # planner saw, such as planned points, after the planner logs out); their tags still differ from the public's.
    _, token = add_user(engine, "planner")
    planner = {"Authorization": f"Bearer {token}"}
    public = client.get("/api/v1/layers/grids")
    assert public.headers["Cache-Control"].startswith("public")
    theirs = client.get("/api/v1/layers/grids", headers=planner)
    assert theirs.headers["Cache-Control"] == "no-store"
    assert {"Cookie", "Authorization"} <= set(theirs.vary)
    assert theirs.headers["ETag"] != public.headers["ETag"]
    # The public's tag does not unlock the planner's answer (it would lack planned points), nor the other way round.
    assert client.get("/api/v1/layers/grids", headers={**planner, "If-None-Match": public.headers["ETag"]}
                      ).status_code == 200
    what_if = client.get("/api/v1/coverage/grids?radius=300&planned=true", headers=planner)
    assert what_if.status_code == 200 and what_if.headers["Cache-Control"] == "no-store"
