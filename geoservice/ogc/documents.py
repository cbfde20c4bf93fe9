"""The JSON documents of OGC API – Features, with their links; framework-free.

Each function takes the absolute URL of the API root (``base``, e.g. ``http://host/ogc``), the format being served
(``json`` or ``html``) and plain data from :mod:`geoservice.ogc.core`, and returns the document. The HTML views
render these same documents, so both formats always say the same thing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlencode

from geoservice.catalogue import Table
from geoservice.ogc.core import COLLECTIONS, CRS84, NUMBER_MATCHED_MAX, ItemsPage, ItemsQuery
from geoservice.ogc.temporal import temporal_property

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
NUMBER_MATCHED_RULE = (f"numberMatched is given when at most {NUMBER_MATCHED_MAX:,} features match, counted "
                       "exactly; beyond that it is left out (never estimated), and pages reached by id (after, "
                       "before) leave it out: the first page gave it.")
PAGING_RULES = ("Items come in id order; the next link of a page asks for the features after its last id (after=), "
                "so a deep page costs what the first does (offset= still works, but reads every feature before the "
                f"page). {NUMBER_MATCHED_RULE} datetime (an instant, a date or an interval, RFC 3339) selects "
                "features by the time of their last change (updated_at).")

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
        "description": f"{DESCRIPTION} {PAGING_RULES}",
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
        "description": f"{coll.description} {time_note(coll)} {NUMBER_MATCHED_RULE}",
        "keywords": [coll.title_zh, coll.title_en],
        "itemType": "feature",
        "crs": [CRS84],
        "links": [
            *self_and_alternate(href, fmt, what=f"the {coll.title_en} collection"),
            link(f"{href}/items?f=json", "items", GEOJSON, f"{coll.title_en} as GeoJSON"),
            link(f"{href}/items?f=html", "items", HTML, f"{coll.title_en} as HTML"),
        ],
    }
    # No temporal extent: the data are a snapshot, not time series (datetime selects by the last change), and its
    # bounds would cost a scan of the table on every description.
    if extent is not None:
        doc["extent"] = {"spatial": {"bbox": [extent], "crs": CRS84}}
    return doc


def collections(base: str, fmt: str, extents: dict[str, list[float] | None]) -> dict:
    """The list of collections ``/ogc/collections``."""
    return {
        "links": self_and_alternate(f"{base}/collections", fmt),
        "collections": [collection(base, fmt, c, extents.get(c.id)) for c in COLLECTIONS.values()],
    }


def time_note(coll: Table) -> str:
    """What ``datetime`` selects in ``coll``, in one sentence."""
    column = temporal_property(coll)
    if column is None:
        return "These features have no time: datetime is accepted and every feature answers."
    return f"datetime selects features by {column}, the time of their last change."


def timestamp() -> str:
    """Now, in UTC, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _paging_links(href: str, fmt: str, params: Params, query: ItemsQuery, page: ItemsPage) -> list[dict]:
    """``next`` (after the page's last id) and ``prev`` (before its first): by key, however the page was asked.

    A page between two keys (``after`` and ``before``) keeps its upper bound in ``next``, so a walk ends there.
    """
    if not page.ids:
        return []
    media_type = GEOJSON if fmt == "json" else HTML
    first, last = page.ids[0], page.ids[-1]
    has_next = query.backwards or page.more
    has_prev = page.more if query.backwards else (query.after is not None or query.offset > 0)
    bound = [("before", str(query.before))] if query.before is not None and not query.backwards else []
    links = []
    for rel, present, keys, title in (("next", has_next, [("after", str(last)), *bound], "the next page"),
                                      ("prev", has_prev, [("before", str(first))], "the previous page")):
        if present:
            links.append(link(url(href, "", [*params, ("limit", str(query.limit)), *keys, ("f", fmt)]), rel,
                              media_type, title))
    return links


def items(base: str, fmt: str, coll: Table, query: ItemsQuery, page: ItemsPage, params: Params, *,
          live: bool = False) -> dict:
    """A page of features, ``/ogc/collections/{id}/items``.

    ``params`` are the request's other query parameters (filters, bbox, datetime) in the client's order; every link
    keeps them, with the paging (``limit``, ``offset``/``after``/``before``) and ``f`` set to what was served.
    ``numberMatched`` is there when the page knows it (:func:`geoservice.ogc.core.items`). ``live``: the features
    carry live fields and the answer is tagged by its bytes, so it has no ``timeStamp`` (which would make every
    answer differ).
    """
    return {"type": "FeatureCollection", "features": page.features,
            **_items_envelope(base, fmt, coll, query, page, params, live=live)}


def items_text(base: str, fmt: str, coll: Table, query: ItemsQuery, page: ItemsPage, params: Params, *,
               live: bool = False) -> str:
    """:func:`items` as JSON text, the features spliced in as PostgreSQL wrote them."""
    envelope = json.dumps(_items_envelope(base, fmt, coll, query, page, params, live=live), ensure_ascii=False,
                          separators=(",", ":"))
    return '{"type":"FeatureCollection","features":[' + ",".join(page.feature_texts) + "]," + envelope[1:]


def _items_envelope(base: str, fmt: str, coll: Table, query: ItemsQuery, page: ItemsPage, params: Params, *,
                    live: bool) -> dict:
    """What an items document holds besides its type and features, in the order it is written."""
    href = f"{base}/collections/{coll.id}/items"
    paging = [("limit", str(query.limit))]
    if query.offset:
        paging.append(("offset", str(query.offset)))
    for name, value in (("after", query.after), ("before", query.before)):
        if value is not None:
            paging.append((name, str(value)))
    doc: dict = {}
    if page.number_matched is not None:
        doc["numberMatched"] = page.number_matched
    doc["numberReturned"] = len(page.ids)
    if not live:
        doc["timeStamp"] = timestamp()
    doc["links"] = [
        *self_and_alternate(href, fmt, [*params, *paging], json_type=GEOJSON),
        *_paging_links(href, fmt, params, query, page),
        link(f"{base}/collections/{coll.id}", "collection", JSON, coll.title),
    ]
    return doc


def item(base: str, fmt: str, coll: Table, feature: dict) -> dict:
    """One feature, ``/ogc/collections/{id}/items/{fid}``."""
    href = f"{base}/collections/{coll.id}/items/{feature['id']}"
    return {**feature, "links": [
        *self_and_alternate(href, fmt, json_type=GEOJSON),
        link(f"{base}/collections/{coll.id}", "collection", JSON, coll.title),
    ]}
