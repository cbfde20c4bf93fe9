"""The JSON documents of OGC API – Features, with their links; framework-free.

Each function takes the absolute URL of the API root (``base``, e.g. ``http://host/ogc``), the format being served
(``json`` or ``html``) and plain data from :mod:`geoservice.ogc.core`, and returns the document. The HTML views
render these same documents, so both formats always say the same thing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from geoservice.catalogue import Table
from geoservice.ogc.core import COLLECTIONS, CRS84, ItemsPage, ItemsQuery

JSON = "application/json"
GEOJSON = "application/geo+json"
HTML = "text/html"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
FORMATS = ("json", "html")

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    # Part 4 on points and grids (geoservice.editing): POST/PUT/DELETE, PATCH as a merge patch, ETags and If-Match.
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/features",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/optimistic-locking-etags",
]
TITLE = "geoservice OGC API – Features"
DESCRIPTION = ("The city's convenience points (便民点), street segments, unit grids (单元网格) and administrative "
               "areas as OGC API – Features (Core, GeoJSON, HTML, OpenAPI 3.0; Part 4 writes on points and grids "
               "for logged-in users). Coordinates are WGS 84 "
               "longitude/latitude (CRS84). Open it in QGIS or with GDAL: "
               "ogr2ogr -f GPKG out.gpkg OAPIF:<this URL> points.")

Params = list[tuple[str, str]]


def url(base: str, path: str = "", params: Params = ()) -> str:
    """``base + path`` with ``params`` as the query string (percent-encoded)."""
    query = urlencode(list(params))
    return f"{base}{path}?{query}" if query else f"{base}{path}"


def link(href: str, rel: str, media_type: str, title: str) -> dict:
    """One link object."""
    return {"href": href, "rel": rel, "type": media_type, "title": title}


def self_and_alternate(href: str, fmt: str, params: Params = (), *, json_type: str = JSON,
                       what: str = "this document") -> list[dict]:
    """The ``self`` link in the served format and the ``alternate`` link in the other one."""
    types = {"json": json_type, "html": HTML}
    titles = {"json": f"{what} as JSON", "html": f"{what} as HTML"}
    return [link(url(href, "", [*params, ("f", f)]), "self" if f == fmt else "alternate", types[f], titles[f])
            for f in sorted(FORMATS, key=lambda f: f != fmt)]


def landing(base: str, fmt: str) -> dict:
    """The landing page ``/ogc``."""
    return {
        "title": TITLE,
        "description": DESCRIPTION,
        "links": [
            *self_and_alternate(base, fmt),
            link(f"{base}/api", "service-desc", OPENAPI, "the API definition (OpenAPI 3.0, JSON)"),
            link(f"{base}/api?f=html", "service-doc", HTML, "the API documentation (HTML)"),
            link(f"{base}/conformance", "conformance", JSON, "the conformance classes implemented"),
            link(f"{base}/collections", "data", JSON, "the feature collections"),
        ],
    }


def conformance(base: str, fmt: str) -> dict:
    """The conformance declaration ``/ogc/conformance``."""
    return {"links": self_and_alternate(f"{base}/conformance", fmt), "conformsTo": list(CONFORMANCE)}


def collection(base: str, fmt: str, coll: Table, extent: list[float] | None) -> dict:
    """The description of one collection, ``/ogc/collections/{id}``."""
    href = f"{base}/collections/{coll.id}"
    doc = {
        "id": coll.id,
        "title": coll.title,
        "description": coll.description,
        "keywords": [coll.title_zh, coll.title_en],
        "itemType": "feature",
        "crs": [CRS84],
        "links": [
            *self_and_alternate(href, fmt, what=f"the {coll.title_en} collection"),
            link(f"{href}/items?f=json", "items", GEOJSON, f"{coll.title_en} as GeoJSON"),
            link(f"{href}/items?f=html", "items", HTML, f"{coll.title_en} as HTML"),
        ],
    }
    # No temporal extent: the data are a snapshot, not time series, so the member is left out.
    if extent is not None:
        doc["extent"] = {"spatial": {"bbox": [extent], "crs": CRS84}}
    return doc


def collections(base: str, fmt: str, extents: dict[str, list[float] | None]) -> dict:
    """The list of collections ``/ogc/collections``."""
    return {
        "links": self_and_alternate(f"{base}/collections", fmt),
        "collections": [collection(base, fmt, c, extents.get(c.id)) for c in COLLECTIONS.values()],
    }


def timestamp() -> str:
    """Now, in UTC, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _paging_links(href: str, fmt: str, params: Params, query: ItemsQuery, page: ItemsPage) -> list[dict]:
    media_type = GEOJSON if fmt == "json" else HTML
    links = []
    if query.offset + len(page.features) < page.number_matched:
        after = [*params, ("limit", str(query.limit)), ("offset", str(query.offset + query.limit)), ("f", fmt)]
        links.append(link(url(href, "", after), "next", media_type, "the next page"))
    if query.offset > 0:
        before = [*params, ("limit", str(query.limit)), ("offset", str(max(0, query.offset - query.limit))),
                  ("f", fmt)]
        links.append(link(url(href, "", before), "prev", media_type, "the previous page"))
    return links


def items(base: str, fmt: str, coll: Table, query: ItemsQuery, page: ItemsPage, params: Params) -> dict:
    """A page of features, ``/ogc/collections/{id}/items``.

    ``params`` are the request's other query parameters (filters, bbox) in the client's order; every link keeps
    them, with ``limit``, ``offset`` and ``f`` set to what was served.
    """
    href = f"{base}/collections/{coll.id}/items"
    paging = [("limit", str(query.limit))] + ([("offset", str(query.offset))] if query.offset else [])
    return {
        "type": "FeatureCollection",
        "features": page.features,
        "numberMatched": page.number_matched,
        "numberReturned": len(page.features),
        "timeStamp": timestamp(),
        "links": [
            *self_and_alternate(href, fmt, [*params, *paging], json_type=GEOJSON),
            *_paging_links(href, fmt, params, query, page),
            link(f"{base}/collections/{coll.id}", "collection", JSON, coll.title),
        ],
    }


def item(base: str, fmt: str, coll: Table, feature: dict) -> dict:
    """One feature, ``/ogc/collections/{id}/items/{fid}``."""
    href = f"{base}/collections/{coll.id}/items/{feature['id']}"
    return {**feature, "links": [
        *self_and_alternate(href, fmt, json_type=GEOJSON),
        link(f"{base}/collections/{coll.id}", "collection", JSON, coll.title),
    ]}
