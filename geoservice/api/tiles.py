"""Vector tiles and their TileJSON: ``/tiles``, ``/tiles/{layer}.json``, ``/tiles/{layer}/{z}/{x}/{y}.mvt``.

Tiles read only what the data version covers, so each is tagged by the version, the address, the kinds asked for
and whether the caller sees planned points (``geoservice.http_cache``); a client revalidating a tile it holds gets an
empty 304 before any tile is made — gzipped or not. Answers that depend on the caller (planners see planned points)
are private. Errors are the API's one JSON shape (``/tiles`` is one of the app's JSON prefixes).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from geoservice import budget, http_cache, tiles
from geoservice.errors import InvalidParameter
from geoservice.spatial import box_around
from geoservice.web.auth import sees_hidden

bp = Blueprint("tiles", __name__)

MEDIA_TYPE = "application/vnd.mapbox-vector-tile"


def _only(allowed: tuple[str, ...]) -> None:
    unknown = [name for name in request.args if name not in allowed]
    if unknown:
        accepts = f"accepts only {', '.join(allowed)}" if allowed else "accepts no parameters"
        raise InvalidParameter(f"unknown parameter {unknown[0]!r}; {request.path} {accepts}")


def _kinds(layer: tiles.TileLayer) -> tuple[str, ...] | None:
    """``?kinds=`` on points; no parameter on the other layers."""
    _only(("kinds",) if layer.id == "points" else ())
    return tiles.parse_kinds(request.args.getlist("kinds")) if layer.id == "points" else None


@bp.get("/tiles/<layer>/<z>/<x>/<y>.mvt")
def tile(layer: str, z: str, x: str, y: str):
    """One Mapbox Vector Tile (204 when empty)."""
    tile_layer = tiles.layer_named(layer)
    address = tiles.parse_address(z, x, y)
    kinds = _kinds(tile_layer)
    hidden = tile_layer.id == "points" and sees_hidden()
    conn = budget.connection("layer")
    tags = http_cache.validators(conn, "tile", tile_layer.id, address.z, address.x, address.y, kinds, hidden)
    if http_cache.is_fresh(tags):
        return http_cache.not_modified(tags, private=hidden)
    # The process's kept point cells, made on first use (create_app wires no tile state: nothing to do until asked).
    cells = current_app.extensions.setdefault("geoservice_point_cells", tiles.PointCellsCache())
    body = tiles.tile(conn, tile_layer, address, kinds=kinds, show_hidden=hidden, cells=cells)
    response = Response(body, status=200, mimetype=MEDIA_TYPE) if body else Response(status=204)
    return http_cache.stamp(response, tags, private=hidden)


@bp.get("/tiles/<layer>.json")
def tilejson(layer: str):
    """The TileJSON 3.0.0 document of a layer (points: ``?kinds=`` goes into its tile URL)."""
    tile_layer = tiles.layer_named(layer)
    kinds = _kinds(tile_layer)
    query = f"?kinds={','.join(kinds)}" if kinds else ""
    tiles_url = f"{request.url_root}tiles/{tile_layer.id}/{{z}}/{{x}}/{{y}}.mvt{query}"
    conn = budget.connection("layer")
    tags = http_cache.validators(conn, "tilejson", tiles_url)
    if http_cache.is_fresh(tags):
        return http_cache.not_modified(tags)
    settings = current_app.config["GEOSERVICE_SETTINGS"]
    document = tiles.tilejson(tile_layer, tiles_url=tiles_url,
                              bounds=box_around(*settings.city_center, settings.city_radius_km * 1000),
                              centre=tiles.city_centre(conn, settings.city_center))
    return http_cache.stamp(jsonify(document), tags)


@bp.get("/tiles")
def index():
    """The tile layers, each with its TileJSON address and tile URL template."""
    _only(())
    root = request.url_root
    return jsonify({"layers": [
        {"id": layer.id, "title": layer.table.title, "description": layer.description, "minzoom": layer.minzoom,
         "maxzoom": layer.maxzoom, "tilejson": f"{root}tiles/{layer.id}.json",
         "tiles": f"{root}tiles/{layer.id}/{{z}}/{{x}}/{{y}}.mvt"} for layer in tiles.LAYERS.values()]})
