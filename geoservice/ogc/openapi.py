"""The OpenAPI 3.0 description of /ogc, built from the collections (the catalogue's tables, :mod:`geoservice.ogc.core`).

The views check query parameters against :func:`query_parameters`, the same source this document is built from,
so what the document declares is exactly what the API accepts.
"""

from __future__ import annotations

from geoservice import __version__, editing
from geoservice.api.openapi import IF_MATCH, LOGIN, SECURITY_SCHEMES, feature_body
from geoservice.catalogue import Table
from geoservice.ogc import documents, temporal
from geoservice.ogc.core import COLLECTIONS, DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, key_pattern

ITEMS_PARAMETERS = ("bbox", "datetime", "limit", "offset", "after", "before", "f")
KEY_PARAMETERS = ("after", "before")
"""Paging parameters whose values are a collection's feature ids (a component per collection: the key's type)."""


def query_parameters(coll: Table | None = None) -> tuple[str, ...]:
    """The query parameters a resource accepts: ``f`` everywhere; for items also paging, bbox and the filters."""
    return (*ITEMS_PARAMETERS, *coll.filter_names) if coll is not None else ("f",)


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


PARAMETERS = {
    "f": {"name": "f", "in": "query", "required": False, "style": "form", "explode": False,
          "description": "The format of the response; without it, the Accept header decides (default json).",
          "schema": {"type": "string", "enum": list(documents.FORMATS)}},
    "bbox": {"name": "bbox", "in": "query", "required": False, "style": "form", "explode": False,
             "description": "Only features whose geometry intersects the box minlon,minlat,maxlon,maxlat "
                            "(WGS 84 degrees, CRS84; min must not exceed max).",
             "schema": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"}}},
    "limit": {"name": "limit", "in": "query", "required": False, "style": "form", "explode": False,
              "description": f"How many features per page (default {DEFAULT_LIMIT}); larger values than "
                             f"{MAX_LIMIT} are served as {MAX_LIMIT}.",
              # No "maximum": OGC API - Features serves a larger limit as the server's maximum, never refuses it.
              "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT}},
    "offset": {"name": "offset", "in": "query", "required": False, "style": "form", "explode": False,
               "description": "How many matching features to skip (features are ordered by their id). Kept for "
                              "clients that send it: a deep offset reads every feature before the page; the next "
                              "links page by id (after) instead. With after or before, it skips from there.",
               "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}},
    "datetime": {"name": "datetime", "in": "query", "required": False, "style": "form", "explode": False,
                 "description": f"Only features whose time lies in this instant or interval: {temporal.ALLOWED}. "
                                f"The time is {temporal.TEMPORAL_PROPERTY} (the feature's last change) where the "
                                "collection has it; a collection without a time answers every feature.",
                 "schema": {"type": "string", "pattern": temporal.PATTERN}},
}
_KEY_MEANING = {"after": "Only features whose id follows this one (what a page's next link sends: its last id)",
                "before": "Only features whose id precedes this one, the last of them (what a page's prev link "
                          "sends: its first id); with after, the features between the two"}


def _key_parameter_name(coll: Table, name: str) -> str:
    return f"{coll.id}_{name}"


def _key_parameters() -> dict:
    """The ``after`` and ``before`` parameters of each collection, typed like its key."""
    parameters = {}
    for coll in COLLECTIONS.values():
        if coll.integer_key_max is not None:
            schema = {"type": "integer", "minimum": 0, "maximum": coll.integer_key_max}
        else:
            schema = {"type": "string", "pattern": key_pattern(coll)}
        for name in KEY_PARAMETERS:
            parameters[_key_parameter_name(coll, name)] = {
                "name": name, "in": "query", "required": False, "style": "form", "explode": False,
                "description": f"{_KEY_MEANING[name]}; in key order, paging costs the same at any depth.",
                "schema": schema}
    return parameters


def _json(schema: dict, media_type: str = documents.JSON) -> dict:
    return {media_type: {"schema": schema}, documents.HTML: {"schema": {"type": "string"}}}


NOT_MODIFIED = {"description": "Not Modified: the client's copy (If-None-Match, If-Modified-Since) is current; "
                                "answers that read only what the data version covers carry ETag and Last-Modified "
                                "from it, those with live fields (points) an ETag of their bytes"}


def _get(summary: str, operation_id: str, parameters: list, response: dict, *, not_found: bool = False,
         conditional: bool = False) -> dict:
    # Besides bad input (and nothing there): an over-long address or headers, the database away, busy or slow.
    statuses = ("400", "404", "414", "431", "503") if not_found else ("400", "414", "431", "503")
    responses = {"200": response, **({"304": NOT_MODIFIED} if conditional else {}),
                 **{status: _ref("responses", "Error") for status in statuses}}
    return {"get": {"summary": summary, "operationId": operation_id, "parameters": parameters,
                    "responses": responses}}


def _filter_parameters(coll: Table) -> list[dict]:
    return [{"name": f.name, "in": "query", "required": False, "style": "form", "explode": False,
             "description": f.description, "schema": f.schema} for f in coll.filters]


def _feature_schema(coll: Table) -> dict:
    properties = {p.name: p.schema for p in coll.properties}
    return {"type": "object", "required": ["type", "id", "geometry", "properties"], "properties": {
        "type": {"type": "string", "enum": ["Feature"]},
        "id": coll.property_named(coll.key).schema,
        "geometry": {"type": "object", "nullable": True, "description": f"GeoJSON {coll.geometry.type}"},
        "properties": {"type": "object", "properties": properties},
        "links": {"type": "array", "items": _ref("schemas", "Link")},
    }}


def _feature_collection_schema(coll: Table) -> dict:
    return {"type": "object", "required": ["type", "features"], "properties": {
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "features": {"type": "array", "items": _ref("schemas", f"{coll.id}Feature")},
        "numberMatched": {"type": "integer", "minimum": 0},
        "numberReturned": {"type": "integer", "minimum": 0},
        "timeStamp": {"type": "string", "format": "date-time"},
        "links": {"type": "array", "items": _ref("schemas", "Link")},
    }}


def _collection_paths(coll: Table) -> dict:
    prefix = f"/collections/{coll.id}"
    key_schema = coll.property_named(coll.key).schema
    feature_id = {"name": "featureId", "in": "path", "required": True,
                  "description": f"the {coll.key} of the feature", "schema": key_schema}
    paths = {
        prefix: _get(f"Describe {coll.title}", f"describe_{coll.id}", [_ref("parameters", "f")],
                     {"description": "The collection", "content": _json(_ref("schemas", "Collection"))},
                     conditional=True),
        f"{prefix}/items": _get(
            f"Features of {coll.title}", f"get_{coll.id}_items",
            [*(_ref("parameters", _key_parameter_name(coll, name) if name in KEY_PARAMETERS else name)
               for name in ITEMS_PARAMETERS), *_filter_parameters(coll)],
            {"description": "A page of features, ordered by id, with next/prev links (by id). "
                            + documents.NUMBER_MATCHED_RULE,
             "content": _json(_ref("schemas", f"{coll.id}FeatureCollection"), documents.GEOJSON)},
            not_found=True, conditional=True),
        f"{prefix}/items/{{featureId}}": _get(
            f"One feature of {coll.title}", f"get_{coll.id}_item", [feature_id, _ref("parameters", "f")],
            {"description": "The feature", "content": _json(_ref("schemas", f"{coll.id}Feature"), documents.GEOJSON)},
            not_found=True),
    }
    if coll.id in editing.EDITABLE:
        on_items, on_item = _writes(coll, feature_id)
        paths[f"{prefix}/items"].update(on_items)
        paths[f"{prefix}/items/{{featureId}}"].update(on_item)
        paths[f"{prefix}/items/{{featureId}}"]["get"]["responses"]["200"]["headers"] = {"ETag": {
            "description": "what a write sends back as If-Match", "required": True, "schema": {"type": "string"}}}
    return paths


def _writes(coll: Table, feature_id: dict) -> tuple[dict, dict]:
    """Part 4 operations on a collection that takes writes: (on its items, on one item)."""
    def operation(summary: str, operation_id: str, responses: dict, *, parameters: tuple = (),
                  body: dict | None = None) -> dict:
        refusals = ("400", "401", "403", "404", "409", "412", "414", "428", "431", "503")
        op = {"summary": summary, "operationId": operation_id, "parameters": list(parameters), "security": LOGIN,
              "description": f"Part 4 with the editing API's rules: {editing.__doc__.splitlines()[0]} "
                             "401 without a login (an API token or the pages' session), 403 for a role, squad or "
                             "kiosk that does not allow it, 428 without If-Match, 412 when it is stale, 400 naming "
                             "each field (errors: [{field, reason}]).",
              "responses": {**responses, **{status: _ref("responses", "Error") for status in refusals}}}
        if body is not None:
            op["requestBody"] = body
        return op

    def content(schema: dict, *media_types: str) -> dict:
        return {"required": True, "content": {media_type: {"schema": schema} for media_type in media_types}}

    etag = {"ETag": {"description": "the feature's new ETag", "required": True, "schema": {"type": "string"}}}
    feature = {"description": "The feature as written", "headers": etag,
               "content": {documents.GEOJSON: {"schema": {"type": "object"}}}}
    created = {**feature, "headers": {**etag, "Location": {"description": "the new feature's URL", "required": True,
                                                           "schema": {"type": "string"}}}}
    whole = content(feature_body(coll, partial=False), documents.GEOJSON, "application/json")
    partial = content(feature_body(coll, partial=True), "application/merge-patch+json", "application/json")
    return (
        {"post": operation(f"Create a feature of {coll.title}", f"create_{coll.id}_item", {"201": created},
                           body=whole)},
        {"put": operation(f"Replace a feature of {coll.title}", f"replace_{coll.id}_item", {"200": feature},
                          parameters=(feature_id, IF_MATCH), body=whole),
         "patch": operation(f"Update a feature of {coll.title}", f"update_{coll.id}_item", {"200": feature},
                            parameters=(feature_id, IF_MATCH), body=partial),
         "delete": operation(f"Delete a feature of {coll.title}", f"delete_{coll.id}_item",
                             {"204": {"description": "Deleted"}}, parameters=(feature_id, IF_MATCH))},
    )


def _core_paths() -> dict:
    f = [_ref("parameters", "f")]
    object_response = {"description": "JSON (or HTML)", "content": _json({"type": "object"})}
    return {
        "/": _get("Landing page", "get_landing_page", f, object_response),
        "/conformance": _get("Conformance classes implemented", "get_conformance", f, {
            "description": "The conformance declaration", "content": _json(_ref("schemas", "Conformance"))}),
        "/api": _get("This API definition", "get_api", f, {
            "description": "OpenAPI 3.0 document", "content": _json({"type": "object"}, documents.OPENAPI)}),
        "/collections": _get("The feature collections", "get_collections", f, {
            "description": "The collections", "content": _json(_ref("schemas", "Collections"))}, conditional=True),
    }


def _schemas() -> dict:
    link = {"type": "object", "required": ["href"], "properties": {
        "href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"},
        "title": {"type": "string"}}}
    links = {"type": "array", "items": _ref("schemas", "Link")}
    schemas = {
        "Error": {"type": "object", "required": ["code", "description"], "properties": {
            "code": {"type": "string"}, "description": {"type": "string"}}},
        "Link": link,
        "Conformance": {"type": "object", "required": ["conformsTo"], "properties": {
            "conformsTo": {"type": "array", "items": {"type": "string"}}, "links": links}},
        "Collection": {"type": "object", "required": ["id", "links"], "properties": {
            "id": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
            "extent": {"type": "object"}, "itemType": {"type": "string"},
            "crs": {"type": "array", "items": {"type": "string"}}, "links": links}},
        "Collections": {"type": "object", "required": ["links", "collections"], "properties": {
            "links": links, "collections": {"type": "array", "items": _ref("schemas", "Collection")}}},
    }
    for coll in COLLECTIONS.values():
        schemas[f"{coll.id}Feature"] = _feature_schema(coll)
        schemas[f"{coll.id}FeatureCollection"] = _feature_collection_schema(coll)
    return schemas


def document(base: str) -> dict:
    """The OpenAPI 3.0 document of the API whose root is ``base`` (absolute URL of /ogc)."""
    paths = _core_paths()
    for coll in COLLECTIONS.values():
        paths.update(_collection_paths(coll))
    return {
        "openapi": "3.0.3",
        "info": {"title": documents.TITLE, "version": __version__, "description": documents.DESCRIPTION,
                 "license": {"name": "MIT"}},
        "servers": [{"url": base}],
        "paths": paths,
        "components": {
            "parameters": {**PARAMETERS, **_key_parameters()},
            "schemas": _schemas(),
            "securitySchemes": SECURITY_SCHEMES,
            "responses": {"Error": {
                "description": "Bad input (400) or not found (404); the description names the parameter and what "
                               "is allowed",
                "content": {"application/json": {"schema": _ref("schemas", "Error")}}}},
        },
    }
