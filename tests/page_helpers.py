"""What the browser tests of the live pages share: logging in through the login page, the write API asked with a
token (as a script would), and putting a point back as it was after a test changed it through the served app.

The served app commits what the pages write, so each test that writes restores what it changed (as the owner,
outside the app) before the next test reads the demo city.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.accounts_helpers import PASSWORD

PHONE = {"width": 360, "height": 740}
WAIT_MS = 60_000
# Restored after a test: the point's columns a page or the API may change.
POINT_COLUMNS = ("name", "kind", "amenities", "address", "phone", "opening_hours", "season", "capacity", "occupancy",
                 "status", "notice", "geom")


def login(page, served: str, username: str, *, next_path: str = "/", password: str = PASSWORD) -> None:
    """Log in through the login page (the form, as a person does) and wait for the page it leads to."""
    page.goto(f"{served}/login?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("form [type=submit]")
    assert page.url.split("?")[0].split("#")[0] == served + next_path.split("?", maxsplit=1)[0], page.url


def call(served: str, method: str, path: str, *, token: str | None = None, body: dict | None = None,
         etag: str | None = None) -> tuple[int, dict, dict]:
    """One API request as a script makes it: (status, JSON body, headers)."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if etag:
        headers["If-Match"] = etag
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(served + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


def patch_point(served: str, token: str, point_id: int, properties: dict | None = None,
                geometry: dict | None = None) -> dict:
    """PATCH a point through the API (read first for its ETag); the new feature."""
    status, _, headers = call(served, "GET", f"/api/v1/points/{point_id}")
    assert status == 200
    body: dict = {"properties": properties or {}}
    if geometry is not None:
        body["geometry"] = geometry
    status, answer, _ = call(served, "PATCH", f"/api/v1/points/{point_id}", token=token, body=body,
                             etag=headers["ETag"])
    assert status == 200, answer
    return answer


@contextmanager
def restored_point(engine: Engine, point_id: int):
    """Put the point back as it was (as the owner) when the block ends, whatever the block changed."""
    columns = ", ".join(POINT_COLUMNS)
    with engine.connect() as conn:
        before = conn.execute(sa.text(f"SELECT {columns} FROM point WHERE id = :id"), {"id": point_id}).mappings().one()
    try:
        yield dict(before)
    finally:
        assignments = ", ".join(f"{c} = :{c}" for c in POINT_COLUMNS)
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE point SET {assignments} WHERE id = :id"), {**before, "id": point_id})


def point_row(engine: Engine, point_id: int) -> dict:
    """The point as the database has it now (lon/lat, occupancy, status, notice …)."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT id, name, address, capacity, occupancy, status, notice, live_updated_at, ST_X(geom) AS lon, "
            "ST_Y(geom) AS lat FROM point WHERE id = :id"), {"id": point_id}).mappings().one())


def no_horizontal_scroll(page) -> bool:
    """Nothing on the page is wider than the viewport."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth && "
                         "document.body.scrollWidth <= window.innerWidth")
