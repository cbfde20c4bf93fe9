"""OpenStreetMap extracts (``.osm.pbf``): walkable streets from ``highway=*`` ways, points from amenity tags.

Read with pyrosm (which decodes the PBF and builds way geometries); this module only decides what becomes what.

Streets: the ways of pyrosm's ``walking`` network (it drops ``foot=no``, ``access=private`` and the like) whose
``highway`` value is in :data:`WALKABLE_HIGHWAYS`, mapped to our street class. Motorways, ``corridor`` (indoors),
``elevator``, ``platform``, ``construction``/``proposed`` and unknown values are left out. Ways are not split at
intersections here: the importer runs :func:`geoservice.ingest.topology.split_at_intersections` and rebuilds the routing
topology after every street import.

Points: the nodes and areas matching a row of :data:`POINT_TAGS` become points of its kind with its amenities,
at the node or at a point inside the area (``point_on_surface``). Further tags add amenities
(:data:`AMENITY_TAGS`: ``drinking_water=yes`` → drinking water, ``bench=yes`` → seating, ``covered=yes`` or
``shelter=yes`` → shade, ``toilets=yes`` → toilet). The name is ``name:zh``, else ``name``, else the kind's
Chinese label and the OSM id (a point must have a name). ``opening_hours`` is kept when it is in the subset
:mod:`geoservice.hours` understands, else dropped (OSM's full syntax is richer). Only streets and points come
from OSM; boundaries and grids come from the bureau's own files.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from geoservice import hours
from geoservice.errors import InvalidParameter
from geoservice.ingest.kinds import KindSpec
from geoservice.vocab import label

# OSM highway value → our street class (geoservice.vocab.STREET_CLASSES).
WALKABLE_HIGHWAYS: dict[str, str] = {
    "trunk": "trunk", "trunk_link": "trunk",
    "primary": "primary", "primary_link": "primary",
    "secondary": "secondary", "secondary_link": "secondary",
    "tertiary": "tertiary", "tertiary_link": "tertiary",
    "unclassified": "unclassified", "road": "unclassified",
    "residential": "residential", "living_street": "living_street", "service": "service",
    "pedestrian": "pedestrian", "footway": "footway", "path": "path", "cycleway": "cycleway",
    "steps": "steps", "track": "track",
}

# (OSM key, value) → (our kind, amenities every such point has).
POINT_TAGS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("amenity", "toilets"): ("toilet", ("toilet",)),
    ("amenity", "drinking_water"): ("rest_station", ("drinking_water",)),
    ("amenity", "water_point"): ("rest_station", ("drinking_water",)),
    ("amenity", "shelter"): ("rest_station", ("shade", "seating")),
    ("amenity", "parking"): ("parking", ()),
    ("amenity", "marketplace"): ("vendor_point", ()),
    ("amenity", "notice_board"): ("job_board", ()),
}

# (OSM key, value) on any matched object → an extra amenity.
AMENITY_TAGS: dict[tuple[str, str], str] = {
    ("drinking_water", "yes"): "drinking_water",
    ("bench", "yes"): "seating",
    ("covered", "yes"): "shade",
    ("shelter", "yes"): "shade",
    ("toilets", "yes"): "toilet",
}

OSM_KINDS = ("streets", "points")


def read_osm(path: str | Path, *, kind: KindSpec) -> gpd.GeoDataFrame:
    """Streets or points of an OSM PBF extract as a GeoDataFrame in EPSG:4326 with the kind's columns."""
    import pyrosm

    if kind.name not in OSM_KINDS:
        raise InvalidParameter(f"an OpenStreetMap extract gives {' and '.join(OSM_KINDS)} only, not {kind.name}; "
                               "import boundaries and grids from the bureau's own files")
    try:
        osm = pyrosm.OSM(str(path))
        frame = _streets(osm) if kind.name == "streets" else _points(osm)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise InvalidParameter(f"{Path(path).name} is not a readable OSM PBF file: {exc}") from exc
    return frame


def _empty(columns: tuple[str, ...]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({c: [] for c in columns}, geometry=[], crs=4326)


def _streets(osm) -> gpd.GeoDataFrame:
    ways = osm.get_network(network_type="walking")
    if ways is None or ways.empty:
        return _empty(("name", "class"))
    ways = ways[ways["highway"].isin(list(WALKABLE_HIGHWAYS))]
    names = ways["name"] if "name" in ways.columns else pd.Series(None, index=ways.index)
    return gpd.GeoDataFrame({"name": names.where(names.notna(), None).to_numpy(dtype=object),
                             "class": ways["highway"].map(WALKABLE_HIGHWAYS).to_numpy(dtype=object)},
                            geometry=ways.geometry.to_numpy(), crs=4326)


def _tag(row: pd.Series, key: str) -> str | None:
    """A tag's value: pyrosm puts common keys in columns and the rest in a JSON ``tags`` column."""
    value = row.get(key)
    if isinstance(value, str) and value:
        return value
    extra = row.get("tags")
    if isinstance(extra, str) and extra:
        try:
            return json.loads(extra).get(key)
        except (ValueError, AttributeError):
            return None
    return extra.get(key) if isinstance(extra, dict) else None


def _opening_hours(text: str | None) -> str | None:
    if not text:
        return None
    try:
        hours.parse_opening_hours(text)
    except ValueError:
        return None
    return text


def _point_row(row: pd.Series) -> dict | None:
    match = next(((kind, amenities) for (key, value), (kind, amenities) in POINT_TAGS.items()
                  if _tag(row, key) == value), None)
    if match is None:
        return None
    kind, amenities = match
    extra = [a for (key, value), a in AMENITY_TAGS.items() if _tag(row, key) == value]
    name = _tag(row, "name:zh") or _tag(row, "name") or f"{label(kind)} (OSM {row['osm_type']} {row['id']})"
    return {"name": name, "kind": kind, "amenities": ";".join(dict.fromkeys([*amenities, *extra])),
            "opening_hours": _opening_hours(_tag(row, "opening_hours"))}


def _points(osm) -> gpd.GeoDataFrame:
    wanted: dict[str, list[str]] = {}
    for key, value in POINT_TAGS:
        wanted.setdefault(key, []).append(value)
    found = osm.get_pois(custom_filter=wanted)
    columns = ("name", "kind", "amenities", "opening_hours")
    if found is None or found.empty:
        return _empty(columns)
    rows, geometries = [], []
    for index, row in found.iterrows():
        point = _point_row(row)
        if point is not None:
            rows.append(point)
            geometries.append(shapely.point_on_surface(found.geometry.loc[index]))
    if not rows:
        return _empty(columns)
    return gpd.GeoDataFrame(pd.DataFrame(rows, columns=list(columns)), geometry=geometries, crs=4326)
