"""The write API under /api/v1: edit points and grids, tap a kiosk's occupancy, read history and live state.

Points and grids are read with their ETag, created, replaced, patched, deleted and reverted; a point's occupancy
is tapped; a feature's history and the live state that pages poll are read.

Each view is one line deep: who is asking (:func:`geoservice.web.auth.current_actor`, 401 for the public), the
request's connection with the lookup class's statement timeout, the core function in
:mod:`geoservice.editing` (which checks, in order, 404 → 403 → 428/412 → 400), the commit, the answer. A write's
change and its audit row are committed together or not at all: an exception leaves the transaction to be rolled
back when the request's connection is returned.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from geoservice import budget, editing
from geoservice.api import openapi
from geoservice.web.auth import current_actor, sees_hidden

bp = Blueprint("editing", __name__)
# A point is named by its id, a grid by its 15-digit code; views serve both, told apart by ``kind``.
POINT = {"kind": "points"}
GRID = {"kind": "grids"}
HISTORY = {"points": "/api/v1/points/{id}/history", "grids": "/api/v1/grids/{code}/history"}


def _settings():
    return current_app.config["GEOSERVICE_SETTINGS"]


def bounds() -> editing.Bounds:
    """Where features may lie: the settings' city centre and radius (what imports check)."""
    settings = _settings()
    return editing.Bounds(center=settings.city_center, radius_km=settings.city_radius_km)


def _body():
    """The JSON body, or None when there is none or it is not JSON (the core then says what it must be)."""
    return request.get_json(silent=True)


def committed(write, *args, **kwargs):
    """``write(conn, actor, *args, **kwargs)`` for the current user, committed; the actor is asked for first (401)."""
    actor = current_actor()
    conn = budget.connection("lookup")
    result = write(conn, actor, *args, **kwargs)
    conn.commit()
    return result


def _feature(versioned_or_written, status: int = 200, location: str | None = None) -> Response:
    response = jsonify(versioned_or_written.feature)
    response.mimetype = "application/geo+json"
    response.status_code = status
    response.headers["ETag"] = versioned_or_written.etag
    if location:
        response.headers["Location"] = location
    return response


def _written(kind: str, written: editing.Written) -> Response:
    return written_response(written, f"/api/v1/{kind}")


def written_response(written: editing.Written, collection_url: str) -> Response:
    """204 after a delete; 201 with Location (``collection_url``/id) and ETag after a create; else 200 and ETag."""
    if written.feature is None:
        return Response(status=204)
    if written.created:
        return _feature(written, 201, f"{collection_url}/{written.feature['id']}")
    return _feature(written)


@bp.get("/api/v1/points/<int:key>", defaults=POINT)
@bp.get("/api/v1/grids/<key>", defaults=GRID)
def feature(kind: str, key):
    """One point or grid, with its ETag (what If-Match sends back)."""
    return _feature(editing.get_feature(budget.connection("lookup"), kind, key, show_hidden=sees_hidden()))


@bp.post("/api/v1/points", defaults=POINT)
@bp.post("/api/v1/grids", defaults=GRID)
def create(kind: str):
    """A new point or grid from a GeoJSON Feature (planners): 201, Location and ETag."""
    return _written(kind, committed(editing.create_feature, kind, _body(), bounds=bounds()))


@bp.put("/api/v1/points/<int:key>", defaults=POINT)
@bp.put("/api/v1/grids/<key>", defaults=GRID)
def replace(kind: str, key):
    """The feature replaced by a whole GeoJSON Feature (If-Match required)."""
    return _written(kind, committed(editing.replace_feature, kind, key, _body(),
                                     if_match=request.headers.get("If-Match"), bounds=bounds()))


@bp.patch("/api/v1/points/<int:key>", defaults=POINT)
@bp.patch("/api/v1/grids/<key>", defaults=GRID)
def patch(kind: str, key):
    """The properties (and geometry) a body names changed (If-Match required)."""
    return _written(kind, committed(editing.patch_feature, kind, key, _body(),
                                     if_match=request.headers.get("If-Match"), bounds=bounds()))


@bp.delete("/api/v1/points/<int:key>", defaults=POINT)
@bp.delete("/api/v1/grids/<key>", defaults=GRID)
def delete(kind: str, key):
    """The feature deleted (planners; If-Match required): 204."""
    return _written(kind, committed(editing.delete_feature, kind, key, if_match=request.headers.get("If-Match")))


@bp.post("/api/v1/points/<int:key>/revert", defaults=POINT)
@bp.post("/api/v1/grids/<key>/revert", defaults=GRID)
def revert(kind: str, key):
    """The feature as it was after an earlier version (planners; audited as a revert)."""
    return _written(kind, committed(editing.revert_feature, kind, key, _body(),
                                     if_match=request.headers.get("If-Match"), bounds=bounds()))


@bp.get("/api/v1/points/<int:key>/history", defaults=POINT)
@bp.get("/api/v1/grids/<key>/history", defaults=GRID)
def history(kind: str, key):
    """The feature's changes, newest first (logged-in users; where from only for planners and admins)."""
    actor = current_actor()
    args = openapi.read_query(HISTORY[kind])
    return jsonify(editing.history(budget.connection("lookup"), actor, kind, key, limit=args["limit"],
                                   before=args["before"]))


@bp.post("/api/v1/points/<int:key>/occupancy")
def occupancy(key: int):
    """A tap on a point's occupancy: +1, −1, full or set N, applied atomically; the live state and the ETag."""
    live = committed(editing.change_occupancy, key, _body())
    response = jsonify(live.state)
    response.headers["ETag"] = live.etag
    return response


@bp.get("/api/v1/points/live")
def live_points():
    """The live state (occupancy, capacity, status, notice, when it changed) of points, for pages to poll."""
    args = openapi.read_query("/api/v1/points/live")
    return jsonify(editing.live_points(budget.connection("lookup"), ids=args["ids"], since=args["since"],
                                       show_hidden=sees_hidden(),
                                       stale_after_minutes=_settings().occupancy_stale_minutes))
