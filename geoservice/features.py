"""The city's layers as GeoJSON: what the maps draw, read straight from PostGIS."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.errors import InvalidParameter
from geoservice.params import BBox
from geoservice.vocab import AMENITIES, POINT_KINDS

# layer → (table, properties SQL). Properties are built in SQL so one query returns finished GeoJSON.
LAYERS: dict[str, tuple[str, str]] = {
    "districts": ("district", "jsonb_build_object('code', t.code, 'name', t.name)"),
    "subdistricts": ("subdistrict", "jsonb_build_object('code', t.code, 'name', t.name)"),
    "communities": ("community", "jsonb_build_object('code', t.code, 'name', t.name)"),
    "grids": ("grid", "jsonb_build_object('code', t.code, 'name', t.name, 'area_m2', round(t.area_m2::numeric, 1), "
                      "'officer_name', t.officer_name, 'officer_phone', t.officer_phone, "
                      "'squad', (SELECT s.name FROM squad s WHERE s.id = t.squad_id), "
                      "'squad_phone', (SELECT s.phone FROM squad s WHERE s.id = t.squad_id))"),
    "streets": ("street", "jsonb_build_object('id', t.id, 'name', t.name, 'class', t.class, "
                          "'length_m', round(t.length_m::numeric, 1))"),
    "points": ("point", "jsonb_build_object('id', t.id, 'name', t.name, 'kind', t.kind, 'amenities', t.amenities, "
                        "'address', t.address, 'phone', t.phone, 'opening_hours', t.opening_hours, "
                        "'season', t.season, 'capacity', t.capacity, 'occupancy', t.occupancy, 'status', t.status)"),
}


def layer_collection(conn: Connection, layer: str, *, bbox: BBox | None = None) -> dict:
    """All features of ``layer`` (within ``bbox`` if given) as a GeoJSON FeatureCollection dict."""
    if layer not in LAYERS:
        raise InvalidParameter(f"layer must be one of {', '.join(LAYERS)}; got {layer!r}")
    table, properties = LAYERS[layer]
    where = ""
    params: dict = {}
    if bbox is not None:
        where = "WHERE t.geom && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326)"
        params = dict(zip(("minx", "miny", "maxx", "maxy"), bbox, strict=True))
    key = "id" if table in ("street", "point") else "code"
    query = sa.text(f"""
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'type', 'Feature', 'id', t.{key},
                   'geometry', ST_AsGeoJSON(t.geom, 7)::jsonb,
                   'properties', {properties}) ORDER BY t.{key}), '[]'::jsonb)::text
        FROM {table} t {where}
    """)
    features = json.loads(conn.execute(query, params).scalar_one())
    if layer == "points":
        _add_labels(features)
    return {"type": "FeatureCollection", "features": features}


def _add_labels(features: list[dict]) -> None:
    kinds = {t.code: t for t in POINT_KINDS}
    amenities = {t.code: t for t in AMENITIES}
    for feature in features:
        props = feature["properties"]
        kind = kinds[props["kind"]]
        props["kind_label"] = {"zh": kind.zh, "en": kind.en}
        props["amenity_labels"] = [{"code": a, "zh": amenities[a].zh, "en": amenities[a].en}
                                   for a in props["amenities"]]
