"""The /ogc blueprint: OGC API – Features over HTTP.

Each view is one line deep: negotiate the format and refuse unknown parameters, validate, call
:mod:`geoservice.ogc.core` with the request's connection, build the document (:mod:`geoservice.ogc.documents`)
and serialise it as JSON or render it as HTML. Errors are raised as :mod:`geoservice.errors` exceptions and turned
into the one JSON error shape by the app's handler.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, make_response, render_template, request
from werkzeug.exceptions import MethodNotAllowed

from geoservice import budget, editing, http_cache
from geoservice.api.editing import bounds, committed, written_response
from geoservice.catalogue import Table
from geoservice.errors import InvalidParameter
from geoservice.ogc import core, documents, openapi
from geoservice.ogc.documents import FORMATS, GEOJSON, HTML, JSON, OPENAPI
from geoservice.ogc.temporal import parse_datetime
from geoservice.params import absent, parse_bbox, parse_choice, parse_int
from geoservice.web.auth import sees_hidden

PAGING = ("limit", "offset", "after", "before", "f")
LIVE_FIELDS = {"occupancy", "notice", "live_updated_at"}
"""Properties that change without moving the data version (``geoservice.http_cache``): a collection carrying any is
tagged by the bytes of its answer, not by the version."""

bp = Blueprint("ogc", __name__)


def _base() -> str:
    """Absolute URL of the API root (links are absolute, as GDAL and QGIS follow them verbatim)."""
    return request.root_url.rstrip("/") + "/ogc"


def _check_params(allowed: tuple[str, ...]) -> None:
    for name in request.args:
        if name not in allowed:
            raise InvalidParameter(f"unknown parameter {name!r}; {request.path} accepts: {', '.join(allowed)}")
        count = len(request.args.getlist(name))
        if count > 1:
            raise InvalidParameter(f"parameter {name!r} is given {count} times; give it once")


def _format(allowed: tuple[str, ...] = ("f",)) -> str:
    """Refuse unknown parameters, then ``json`` or ``html``: from ``f`` if given, else from the Accept header."""
    _check_params(allowed)
    chosen = parse_choice("f", request.args.get("f"), FORMATS)
    if chosen:
        return chosen
    best = request.accept_mimetypes.best_match([JSON, GEOJSON, HTML], default=JSON)
    return "html" if best == HTML else "json"


def _respond(doc: dict, fmt: str, template: str, media_type: str = JSON, **context) -> Response:
    if fmt == "html":
        response = make_response(render_template(template, doc=doc, base=_base(), **context))
    else:
        response = jsonify(doc)
        response.content_type = media_type
    response.vary.add("Accept")
    return response


@bp.get("/ogc")
@bp.get("/ogc/")
def landing():
    """The landing page."""
    fmt = _format()
    return _respond(documents.landing(_base(), fmt), fmt, "ogc_landing.html")


@bp.get("/ogc/conformance")
def conformance():
    """The conformance classes implemented."""
    fmt = _format()
    return _respond(documents.conformance(_base(), fmt), fmt, "ogc_conformance.html")


@bp.get("/ogc/api")
def api_definition():
    """The OpenAPI 3.0 document (``f=html``: the same, as a page)."""
    fmt = _format()
    return _respond(openapi.document(_base()), fmt, "ogc_api.html", OPENAPI)


def _versioned(render, fmt: str, kind: str) -> Response:
    """``render(conn)``, or an empty 304 when the client holds this answer at the current data version.

    For answers that read only what the data version covers. The answer is selected by the address, the format (the
    Accept header may choose it), the API root its links carry and whether the caller sees planned points; the
    check comes before any work, on the connection the answer is then read from.
    """
    hidden = sees_hidden()
    conn = budget.connection(kind)
    tags = http_cache.validators(conn, "ogc", request.full_path, fmt, _base(), hidden)
    if http_cache.is_fresh(tags):
        return http_cache.not_modified(tags, private=hidden)
    return http_cache.stamp(render(conn), tags, private=hidden)


@bp.get("/ogc/collections")
def collections():
    """All feature collections, with their extents."""
    fmt = _format()

    def render(conn):
        extents = core.spatial_extents(conn, show_hidden=sees_hidden())
        return _respond(documents.collections(_base(), fmt, extents), fmt, "ogc_collections.html")

    return _versioned(render, fmt, "layer")


@bp.get("/ogc/collections/<collection_id>")
def collection(collection_id: str):
    """One feature collection."""
    coll = core.get_collection(collection_id)
    fmt = _format()

    def render(conn):
        extent = core.spatial_extent(conn, coll, show_hidden=sees_hidden())
        return _respond(documents.collection(_base(), fmt, coll, extent), fmt, "ogc_collection.html",
                        collection=coll)

    return _versioned(render, fmt, "lookup")


def _items_query(coll: Table) -> core.ItemsQuery:
    args = request.args
    return core.ItemsQuery(
        bbox=parse_bbox(args.get("bbox")),
        limit=core.parse_limit(args.get("limit")),
        offset=parse_int("offset", args.get("offset"), default=0, minimum=0, maximum=core.MAX_OFFSET),
        after=core.parse_key(coll, "after", args.get("after")),
        before=core.parse_key(coll, "before", args.get("before")),
        datetime=parse_datetime(args.get("datetime")),
        filters={f.name: f.parse(args[f.name]) for f in coll.filters if not absent(f.name, args.get(f.name))},
    )


@bp.get("/ogc/collections/<collection_id>/items")
def items(collection_id: str):
    """A page of a collection's features: bbox, datetime, property filters; paged by id (after/before) or offset."""
    coll = core.get_collection(collection_id)
    fmt = _format(openapi.query_parameters(coll))
    query = _items_query(coll)
    live = any(p.name in LIVE_FIELDS for p in coll.properties)

    def render(conn):
        page = core.items(conn, coll, query, show_hidden=sees_hidden())
        others = [(k, v) for k, v in request.args.items(multi=True) if k not in PAGING]
        if fmt == "json":
            response = Response(documents.items_text(_base(), fmt, coll, query, page, others, live=live),
                                content_type=GEOJSON)
            response.vary.add("Accept")
            return response
        doc = documents.items(_base(), fmt, coll, query, page, others, live=live)
        return _respond(doc, fmt, "ogc_items.html", GEOJSON, collection=coll, query=query,
                        number_matched_max=core.NUMBER_MATCHED_MAX)

    if live:
        # Points carry occupancy and notices, which the data version does not cover: tagged by content.
        return http_cache.body_tag(render(budget.connection("layer")))
    return _versioned(render, fmt, "layer")


@bp.get("/ogc/collections/<collection_id>/items/<feature_id>")
def item(collection_id: str, feature_id: str):
    """One feature (with the ETag a Part 4 write sends back as If-Match, for the collections that take writes)."""
    coll = core.get_collection(collection_id)
    fmt = _format()
    conn = budget.connection("lookup")
    feature = core.item(conn, coll, feature_id, show_hidden=sees_hidden())
    response = _respond(documents.item(_base(), fmt, coll, feature), fmt, "ogc_item.html", GEOJSON, collection=coll)
    if coll.id in editing.EDITABLE:
        response.headers["ETag"] = editing.get_feature(conn, coll.id, feature_id, show_hidden=sees_hidden()).etag
    return response


# -- Part 4: Create, Replace, Update, Delete (points and grids; the editing API's core functions and rules) -------

def _editable(collection_id: str) -> str:
    """The id of a collection that takes writes; 404 for no collection, 405 (Allow: GET) for a read-only one."""
    coll = core.get_collection(collection_id)
    if coll.id not in editing.EDITABLE:
        raise MethodNotAllowed(valid_methods=["GET", "HEAD", "OPTIONS"],
                               description=f"{coll.id} are read-only here; {', '.join(editing.EDITABLE)} take writes")
    return coll.id


def _items_url(collection_id: str) -> str:
    return f"{_base()}/collections/{collection_id}/items"


@bp.post("/ogc/collections/<collection_id>/items")
def create_item(collection_id: str):
    """Create a feature from a GeoJSON Feature: 201 with Location and ETag."""
    kind = _editable(collection_id)
    return written_response(committed(editing.create_feature, kind, request.get_json(silent=True), bounds=bounds()),
                            _items_url(kind))


@bp.put("/ogc/collections/<collection_id>/items/<feature_id>")
def replace_item(collection_id: str, feature_id: str):
    """Replace a feature (If-Match required)."""
    kind = _editable(collection_id)
    return written_response(committed(editing.replace_feature, kind, feature_id, request.get_json(silent=True),
                                      if_match=request.headers.get("If-Match"), bounds=bounds()), _items_url(kind))


@bp.patch("/ogc/collections/<collection_id>/items/<feature_id>")
def update_item(collection_id: str, feature_id: str):
    """Update a feature with a JSON merge patch of its properties and geometry (If-Match required)."""
    kind = _editable(collection_id)
    # A merge patch (application/merge-patch+json, what Part 4 names) of a feature is the editing API's PATCH body.
    return written_response(committed(editing.patch_feature, kind, feature_id, request.get_json(silent=True),
                                      if_match=request.headers.get("If-Match"), bounds=bounds()), _items_url(kind))


@bp.delete("/ogc/collections/<collection_id>/items/<feature_id>")
def delete_item(collection_id: str, feature_id: str):
    """Delete a feature (If-Match required): 204."""
    kind = _editable(collection_id)
    return written_response(committed(editing.delete_feature, kind, feature_id,
                                      if_match=request.headers.get("If-Match")), _items_url(kind))
