"""Vector tiles of the city's layers, made by PostGIS (``ST_AsMVT``), and their TileJSON documents.

A map of a city with a million points cannot load its layers as GeoJSON: the browser would parse hundreds of
megabytes. Tiles carry only what one 256-pixel square of the map shows, in Web Mercator (EPSG:3857) integer
coordinates (extent :data:`EXTENT`, buffer :data:`BUFFER`), one MVT layer per tile named like the URL's layer:

- ``points``: below :data:`CLUSTER_MAX_ZOOM` the points are aggregated on the server into one clustering across
  kinds: the tile is cut into :data:`CLUSTER_CELLS` × :data:`CLUSTER_CELLS` cells (32 px of a 256-px tile) and each
  non-empty cell is one feature at its members' mean position with ``count`` and ``n_<kind>`` for each kind present
  — and, when ``count`` is 1, the point's ``id``, ``kind``, ``name`` and ``status``. From :data:`CLUSTER_MAX_ZOOM`
  on every point is a feature (``id, kind, name, status, count=1``) — unless the tile holds more than
  :data:`MAX_POINTS` points, when it is clustered as below (so no tile is ever cut short, and a feature with
  ``count`` > 1 is a cluster at any zoom). A point belongs to exactly one tile (its tile is the one its position
  falls in, west and north edges included), so summing a view's tiles counts every point once; points are not
  repeated in the neighbours' buffers (MapLibre draws circles whole across tile edges). Only what the data
  version covers is carried — no occupancy, notice or open-now: live state comes from ``/api/v1/points/live``.
  Planned points only for those who see them (``catalogue.Table.hidden``).
- ``streets``: ``id, name, class``; a class is drawn from its minimum zoom on (:data:`STREET_CLASS_MIN_ZOOM`:
  trunk and primary at every zoom, secondary from 12, …), at most :data:`MAX_FEATURES` segments, the most
  important classes first.
- ``grids``: ``code, name, community_code, squad`` (the squad's name) from zoom :data:`GRID_MIN_ZOOM`; the coverage
  class is not in the tile — the map joins ``/api/v1/coverage/grids`` by ``code``, so the first paint never waits
  for a whole-city computation.
- ``districts``: ``code, name``.

An empty tile is ``b""`` (the view answers 204). Every tile is one statement bounded by the ``layer`` statement
timeout; tiles below a layer's minimum zoom are empty without a query.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.catalogue import DISTRICT, GRID, POINT, STREET, Table
from geoservice.errors import InvalidParameter, NotFound
from geoservice.params import parse_list
from geoservice.results_cache import data_version
from geoservice.spatial import without_jit
from geoservice.vocab import KIND_CODES, POINT_KINDS, STREET_CLASSES

MAX_ZOOM = 22
"""Tiles are served for zooms 0..MAX_ZOOM."""
EXTENT = 4096
"""Tile coordinates run 0..EXTENT along each side (the MVT default)."""
BUFFER = 64
"""Lines and polygons reach this many tile units past the edge, so strokes join without seams."""
CLUSTER_MAX_ZOOM = 17
"""From this zoom on every point is a feature of its own; below it points are clustered."""
CLUSTER_CELLS = 8
"""A clustered tile is cut into CLUSTER_CELLS × CLUSTER_CELLS cells: 32 px of a 256-px tile."""
MAX_POINTS = 2_000
"""A tile at or past CLUSTER_MAX_ZOOM with more points than this is clustered instead (never cut short)."""
MAX_FEATURES = 10_000
"""At most this many streets, grids or districts in one tile: the most important first (street class, then key)."""
CELLS_MAX_ZOOM = 14
"""Point tiles up to this zoom are summed from the city's cells kept in memory (:class:`PointCells`), deeper ones
are read from the table: a zoom-11 tile of a million-point city holds a quarter of it (1 s to read and group), a
zoom-14 tile a few thousand points (tens of ms)."""
CELLS_MAX_ROWS = 1_000_000
"""A city with more (cell, kind) groups than this at the finest kept level is read from the table at every zoom."""
CELLS_WORK_MEM = "64MB"
"""Memory the whole-city pass reading the kept cells may use for its grouping (PostgreSQL's work_mem)."""
GRID_MIN_ZOOM = 10
"""Grids are drawn from this zoom on: below it a city's thousands of grids are smaller than a pixel."""
STREET_CLASS_MIN_ZOOM: dict[str, int] = {
    "trunk": 0, "primary": 0, "secondary": 12, "tertiary": 13, "unclassified": 14, "residential": 14,
    "living_street": 15, "service": 15, "pedestrian": 15, "footway": 16, "path": 16, "cycleway": 16, "steps": 16,
    "track": 16,
}
"""The zoom from which a street class is in the tiles: a city of 50,000 segments would blacken a low-zoom tile."""
# The Web Mercator sphere (EPSG:3857): x = R·λ, y = R·ln tan(π/4 + φ/2); R·π is the half-width of the world.
_EARTH_RADIUS = 6378137.0
_HALF_WORLD = _EARTH_RADIUS * 3.141592653589793
_CELL_BITS = CLUSTER_CELLS.bit_length() - 1  # CLUSTER_CELLS is a power of two: cells nest from zoom to zoom
_FINE_LEVEL = CELLS_MAX_ZOOM + _CELL_BITS  # the kept cells: 2^_FINE_LEVEL per side of the world
# A point's Web Mercator position (mx, my) from its lon/lat, as a LATERAL of the point table aliased t.
_MERCATOR = ("LATERAL (SELECT ST_X(t.geom) * :half / 180 AS mx, "
             "ln(tan(radians(45 + ST_Y(t.geom) / 2))) * :r AS my) m")


@dataclass(frozen=True)
class TileLayer:
    """One layer of tiles.

    Attributes:
        id: its name in the URL and in the tile.
        table: the catalogue table it draws.
        description: what it is, for TileJSON.
        fields: its feature properties and what each means (TileJSON ``vector_layers[].fields``).
        minzoom: tiles below this zoom are empty.
        maxzoom: the deepest zoom a client need ask for (it over-zooms past it); deeper tiles are still served.
    """

    id: str
    table: Table
    description: str
    fields: dict[str, str]
    minzoom: int = 0
    maxzoom: int = 16
    extra: dict = field(default_factory=dict)


_POINT_FIELDS = {
    "count": "points in the feature: 1 for a single point, more for a cluster",
    **{f"n_{k.code}": f"points of kind {k.code} ({k.zh}, {k.en}) in the cluster; present only when > 0, only "
                      f"below zoom {CLUSTER_MAX_ZOOM}" for k in POINT_KINDS},
    "id": "the point's id (only when count is 1)",
    "kind": f"the point's kind, one of {', '.join(KIND_CODES)} (only when count is 1)",
    "name": "the point's name (only when count is 1)",
    "status": "open, closed or planned (planned only for planners and admins; only when count is 1)",
}

LAYERS: dict[str, TileLayer] = {layer.id: layer for layer in (
    TileLayer("points", POINT,
              f"Convenience points. Below zoom {CLUSTER_MAX_ZOOM}: one clustering across kinds, "
              f"{CLUSTER_CELLS}x{CLUSTER_CELLS} cells per tile (32 px of 256), a feature per non-empty cell at its "
              f"members' mean position with count and n_<kind>, plus id/kind/name/status when count is 1. From "
              f"zoom {CLUSTER_MAX_ZOOM} every point is a feature (count 1), unless a tile holds more than "
              f"{MAX_POINTS} points (then it is clustered). No live fields (occupancy, notice): see "
              "/api/v1/points/live. ?kinds=a,b keeps only those kinds.",
              _POINT_FIELDS, maxzoom=CLUSTER_MAX_ZOOM,
              extra={"cluster_maxzoom": CLUSTER_MAX_ZOOM, "cluster_cells": CLUSTER_CELLS,
                     "max_points": MAX_POINTS}),
    TileLayer("streets", STREET,
              "Street centreline segments. A class appears from its minimum zoom on (class_minzoom); at most "
              f"{MAX_FEATURES} segments per tile, the most important classes first.",
              {"id": "the segment's id", "name": "the street's name", "class": "OSM highway class"},
              extra={"class_minzoom": STREET_CLASS_MIN_ZOOM, "max_features": MAX_FEATURES}),
    TileLayer("grids", GRID,
              f"Unit grids (单元网格), from zoom {GRID_MIN_ZOOM}. The coverage class is not in the tile: join "
              "/api/v1/coverage/grids by code.",
              {"code": "15-digit grid code", "name": "the grid's name", "community_code": "12-digit community code",
               "squad": "the enforcement squad (执法中队) looking after it"},
              minzoom=GRID_MIN_ZOOM, extra={"max_features": MAX_FEATURES}),
    TileLayer("districts", DISTRICT, "Districts (区/县).",
              {"code": "6-digit admin code", "name": "the district's name"}, extra={"max_features": MAX_FEATURES}),
)}
"""The tile layers, by URL name."""


@dataclass(frozen=True)
class TileAddress:
    """A tile's zoom and column/row (XYZ scheme: row 0 at the north)."""

    z: int
    x: int
    y: int


_WHOLE = re.compile(r"[0-9]{1,7}")


def layer_named(name: str) -> TileLayer:
    """The tile layer called ``name``.

    Raises:
        NotFound: no such layer (the message lists the layers).
    """
    if name not in LAYERS:
        raise NotFound(f"no tile layer {name!r}; layers: {', '.join(LAYERS)}")
    return LAYERS[name]


def parse_address(z: str, x: str, y: str) -> TileAddress:
    """The tile at ``z/x/y``: z in 0..22, x and y in 0..2^z−1.

    Raises:
        InvalidParameter: naming the allowed range.
    """
    if not _WHOLE.fullmatch(z) or not 0 <= int(z) <= MAX_ZOOM:
        raise InvalidParameter(f"z must be a whole number from 0 to {MAX_ZOOM}, got {z!r}")
    zoom = int(z)
    last = 2**zoom - 1
    for name, raw in (("x", x), ("y", y)):
        if not _WHOLE.fullmatch(raw) or int(raw) > last:
            raise InvalidParameter(f"{name} must be a whole number from 0 to {last} at zoom {zoom}, got {raw!r}")
    return TileAddress(zoom, int(x), int(y))


def parse_kinds(values: list[str]) -> tuple[str, ...] | None:
    """``?kinds=kiosk,toilet`` (also repeated): the kinds to keep, each checked; None when absent (every kind)."""
    if not values:
        return None
    return tuple(sorted(parse_list("kinds", values, KIND_CODES), key=KIND_CODES.index))


def tile(conn: Connection, layer: TileLayer, address: TileAddress, *, kinds: tuple[str, ...] | None = None,
         show_hidden: bool = False, cells: PointCellsCache | None = None) -> bytes:
    """The Mapbox Vector Tile of ``layer`` at ``address``; ``b""`` when it holds no feature.

    Args:
        conn: database connection (the caller bounds its statements).
        layer: one of :data:`LAYERS`.
        address: the tile.
        kinds: points only: keep these kinds (None: every kind).
        show_hidden: points only: include planned points (planners and admins).
        cells: points only: the process's kept cells; tiles to zoom :data:`CELLS_MAX_ZOOM` are summed from them
            (None: every tile is read from the table).
    """
    if address.z < layer.minzoom:
        return b""
    kept = cells.get(conn) if cells is not None and layer.table is POINT and address.z <= CELLS_MAX_ZOOM else None
    if kept is not None:
        statement, params = kept.tile_statement(address, kinds=kinds, show_hidden=show_hidden)
    elif layer.table is POINT:
        statement, params = _points_statement(address, kinds=kinds, show_hidden=show_hidden)
    else:
        statement, params = _area_statement(layer, address)
    with without_jit(conn):
        body = conn.execute(sa.text(statement), params).scalar_one()
    return bytes(body or b"")


def _lonlat_box(margin: str) -> str:
    """SQL of the tile's lon/lat box grown by ``margin`` (a fraction of the tile), for the geometry index.

    The grown box is cut to the Mercator world first: past its east or west edge a longitude would wrap around
    (a zoom-1 tile's buffer would become a box over the whole other hemisphere, or none).
    """
    return (f"ST_Transform(ST_ClipByBox2D(ST_TileEnvelope(:z, :x, :y, margin => {margin}), "
            f"ST_MakeEnvelope(-:half, -:half, :half, :half, 3857)), 4326)")


def _envelope_params(address: TileAddress) -> dict:
    return {"z": address.z, "x": address.x, "y": address.y, "extent": EXTENT, "buffer": BUFFER, "half": _HALF_WORLD}


def _area_statement(layer: TileLayer, address: TileAddress) -> tuple[str, dict]:
    """Streets, grids or districts: clipped to the tile and its buffer, at most MAX_FEATURES."""
    table = layer.table
    params = {**_envelope_params(address), "margin": BUFFER / EXTENT, "cap": MAX_FEATURES}
    names = [name for name in layer.fields]
    columns = ", ".join(f"{table.property_named(name).select_sql} AS \"{name}\"" for name in names)
    where, order = "true", f"t.{table.key}"
    if table is STREET:
        shown = [c for c in STREET_CLASSES if STREET_CLASS_MIN_ZOOM[c] <= address.z]
        where = "t.class = ANY(:classes)"
        params["classes"] = shown
        # The most important classes first, so a tile at the cap loses side streets, not arterials.
        order = f"array_position(ARRAY[{', '.join(repr(c) for c in STREET_CLASSES)}]::text[], t.class), t.id"
    statement = f"""
        WITH box AS (
            SELECT ST_TileEnvelope(:z, :x, :y) AS e,
                   {_lonlat_box(":margin")} AS q
        )
        SELECT ST_AsMVT(f, '{layer.id}', :extent, 'geom') FROM (
            SELECT {', '.join(f'f."{name}"' for name in names)},
                   ST_AsMVTGeom(ST_Transform(f.g, 3857), box.e, :extent, :buffer, true) AS geom
            FROM box, LATERAL (
                SELECT {columns}, t.{table.geometry.column} AS g
                FROM {table.name} t
                WHERE t.{table.geometry.column} && box.q AND {where}
                ORDER BY {order} LIMIT :cap) f
        ) f WHERE f.geom IS NOT NULL
    """
    return statement, params


def _points_statement(address: TileAddress, *, kinds: tuple[str, ...] | None,
                      show_hidden: bool) -> tuple[str, dict]:
    """Points: clustered by cell below CLUSTER_MAX_ZOOM (or past MAX_POINTS), each its own feature otherwise."""
    params = {**_envelope_params(address), "cells": CLUSTER_CELLS, "cap": MAX_POINTS, "r": _EARTH_RADIUS,
              "half": _HALF_WORLD, "cluster": address.z < CLUSTER_MAX_ZOOM,
              # The lon/lat box the index is asked for is a hair larger than the tile, so that no point the exact
              # Mercator test below keeps is lost to rounding in the box's transformation.
              "pad": 1.0 / EXTENT}
    conditions = [POINT.visible_sql(show_hidden=show_hidden)]
    if kinds is not None:
        conditions.append("t.kind = ANY(:kinds)")
        params["kinds"] = list(kinds)
    per_kind = ",\n".join(f"CASE WHEN g.clustered THEN nullif(count(*) FILTER (WHERE p.kind = '{kind}'), 0) END "
                          f"AS n_{kind}" for kind in (kinds or KIND_CODES))
    kind_columns = ", ".join(f"c.n_{kind}" for kind in (kinds or KIND_CODES))
    statement = f"""
        WITH box AS (
            SELECT e, ST_XMin(e) AS x0, ST_YMax(e) AS y0, ST_XMax(e) - ST_XMin(e) AS w,
                   {_lonlat_box(":pad")} AS q
            FROM ST_TileEnvelope(:z, :x, :y) AS e
        ), p AS (
            -- A point is in the tile when its Mercator position is: west and north edges in, east and south out.
            SELECT t.id, t.kind, m.mx, m.my,
                   least(floor((m.mx - box.x0) / box.w * :cells), :cells - 1)::int AS cx,
                   least(floor((box.y0 - m.my) / box.w * :cells), :cells - 1)::int AS cy
            FROM box, point t, {_MERCATOR}
            WHERE t.geom && box.q AND {' AND '.join(conditions)}
              AND m.mx >= box.x0 AND m.mx < box.x0 + box.w AND m.my > box.y0 - box.w AND m.my <= box.y0
        ), g AS (
            SELECT (:cluster OR (SELECT count(*) FROM (SELECT 1 FROM p LIMIT :cap + 1) s) > :cap) AS clustered
        ), c AS (
            SELECT count(*) AS n, avg(p.mx) AS mx, avg(p.my) AS my, min(p.id) AS one_id,
                   {per_kind}
            FROM p, g
            GROUP BY CASE WHEN g.clustered THEN -(p.cx * :cells + p.cy) - 1 ELSE p.id END, g.clustered
        )
        SELECT ST_AsMVT(f, 'points', :extent, 'geom') FROM (
            SELECT s.id, s.kind, s.name, s.status, c.n AS count, {kind_columns},
                   ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(c.mx, c.my), 3857), box.e, :extent, :buffer, false) AS geom
            FROM box, c LEFT JOIN point s ON c.n = 1 AND s.id = c.one_id
        ) f
    """
    return statement, params


# -- the city's points in cells, kept in memory ------------------------------------------------------------------

@dataclass(frozen=True)
class PointCells:
    """The city's points summed per kept cell, kind and visibility, at one data version.

    The kept cells are those of the clustering at zoom :data:`CELLS_MAX_ZOOM`. Cells nest: a cell at zoom z is
    4^(CELLS_MAX_ZOOM − z) kept cells, so any tile to CELLS_MAX_ZOOM is a sum of kept rows — counts and coordinate
    sums add, the smallest id of a one-point cell is its point. The arrays are one entry per (cell, kind, hidden)
    group: ``fx``/``fy`` the cell's column and row (north first), ``kind`` an index into ``KIND_CODES``, ``hidden``
    the catalogue's hidden rule (planned), ``n`` the points, ``sx``/``sy`` their Web Mercator sums, ``first`` the
    smallest id.
    """

    version: int
    fx: np.ndarray
    fy: np.ndarray
    kind: np.ndarray
    hidden: np.ndarray
    n: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    first: np.ndarray

    @classmethod
    def read(cls, conn: Connection) -> PointCells | None:
        """Every point summed per kept cell, in one pass over the table; None for a city with too many groups."""
        version = data_version(conn)
        side = 2**_FINE_LEVEL
        # One integer key per (cell, kind, hidden), grouped in a hash table: the planner cannot know that a million
        # points fall in a few ten thousand keys and, expecting a million groups, would sort them on disk instead
        # (3-4x slower); the memory this transaction may use for it is raised so that the hash is its choice.
        conn.execute(sa.text("SELECT set_config('work_mem', :mem, true)"), {"mem": CELLS_WORK_MEM})
        rows = conn.execute(sa.text(f"""
            SELECT p.key, count(*), sum(p.mx), sum(p.my), min(p.id)
            FROM (SELECT t.id, m.mx, m.my,
                         ((floor((m.mx + :half) / (2 * :half) * :side)::bigint * :side
                           + floor((:half - m.my) / (2 * :half) * :side)::bigint) * :kinds
                          + array_position(CAST(:kind_codes AS text[]), t.kind) - 1) * 2
                         + ({POINT.hidden})::int AS key
                  FROM point t, {_MERCATOR}) p
            GROUP BY p.key LIMIT :most
        """), {"half": _HALF_WORLD, "r": _EARTH_RADIUS, "side": side, "kinds": len(KIND_CODES),
               "kind_codes": list(KIND_CODES), "most": CELLS_MAX_ROWS + 1}).all()
        if len(rows) > CELLS_MAX_ROWS:
            return None
        key, n, sx, sy, first = (np.array(c) for c in zip(*rows, strict=True)) if rows else [np.zeros(0)] * 5
        key = key.astype(np.int64)
        hidden, key = (key & 1).astype(bool), key >> 1
        kind, key = key % len(KIND_CODES), key // len(KIND_CODES)
        return cls(version, key // side, key % side, kind, hidden, n.astype(np.int64), sx.astype(np.float64),
                   sy.astype(np.float64), first.astype(np.int64))

    def tile_statement(self, address: TileAddress, *, kinds: tuple[str, ...] | None,
                       show_hidden: bool) -> tuple[str, dict]:
        """The statement encoding the clustered tile at ``address`` (zoom ≤ CELLS_MAX_ZOOM) from the kept cells."""
        shift = _FINE_LEVEL - (address.z + _CELL_BITS)
        cx, cy = self.fx >> shift, self.fy >> shift
        keep = ((cx >> _CELL_BITS) == address.x) & ((cy >> _CELL_BITS) == address.y)
        if not show_hidden:
            keep &= ~self.hidden
        shown = kinds or KIND_CODES
        if kinds is not None:
            keep &= np.isin(self.kind, [KIND_CODES.index(k) for k in kinds])
        mask = CLUSTER_CELLS - 1
        cell = ((cx[keep] & mask) * CLUSTER_CELLS + (cy[keep] & mask))
        size = CLUSTER_CELLS * CLUSTER_CELLS
        n = self.n[keep]
        count = np.bincount(cell, weights=n, minlength=size).astype(np.int64)
        sx = np.bincount(cell, weights=self.sx[keep], minlength=size)
        sy = np.bincount(cell, weights=self.sy[keep], minlength=size)
        first = np.full(size, np.iinfo(np.int64).max)
        np.minimum.at(first, cell, self.first[keep])
        per_kind = np.bincount(cell * len(KIND_CODES) + self.kind[keep], weights=n,
                               minlength=size * len(KIND_CODES)).astype(np.int64).reshape(size, len(KIND_CODES))
        full = np.flatnonzero(count)
        params: dict = {**_envelope_params(address), "count": count[full].tolist(),
                        "mx": (sx[full] / count[full]).tolist(), "my": (sy[full] / count[full]).tolist(),
                        "first": first[full].tolist()}
        for kind in shown:
            column = per_kind[full, KIND_CODES.index(kind)]
            params[f"n_{kind}"] = [int(v) or None for v in column]
        arrays = ", ".join(f"CAST(:n_{kind} AS bigint[])" for kind in shown)
        statement = f"""
            SELECT ST_AsMVT(f, 'points', :extent, 'geom') FROM (
                SELECT s.id, s.kind, s.name, s.status, u.count, {', '.join(f'u.n_{kind}' for kind in shown)},
                       ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(u.mx, u.my), 3857), ST_TileEnvelope(:z, :x, :y),
                                    :extent, :buffer, false) AS geom
                FROM unnest(CAST(:count AS bigint[]), CAST(:mx AS float8[]), CAST(:my AS float8[]),
                            CAST(:first AS bigint[]), {arrays})
                     AS u(count, mx, my, first, {', '.join(f'n_{kind}' for kind in shown)})
                LEFT JOIN point s ON u.count = 1 AND s.id = u.first
            ) f
        """
        return statement, params


class PointCellsCache:
    """The process's :class:`PointCells`, read again when the data version moves; safe to share between threads.

    One thread reads the cells while the others asking at the same version wait for them (one pass over the table
    per change, not one per request).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: PointCells | None = None
        self._too_big_at: int | None = None

    def get(self, conn: Connection) -> PointCells | None:
        """The cells at the version ``conn`` sees; None when the city has too many of them."""
        version = data_version(conn)
        with self._lock:
            if self._too_big_at == version:
                return None
            if self._cells is None or self._cells.version != version:
                with without_jit(conn):
                    cells = PointCells.read(conn)
                if cells is None:
                    self._too_big_at = version
                    return None
                self._cells = cells
            return self._cells


# -- TileJSON ---------------------------------------------------------------------------------------------------

def city_centre(conn: Connection, fallback: tuple[float, float]) -> tuple[float, float]:
    """The middle of the city's districts (a handful of rows), else ``fallback``: where a map starts."""
    row = conn.execute(sa.text("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(ST_Extent(geom)::geometry) AS c "
                               "FROM district) e")).one()
    return fallback if row[0] is None else (round(row[0], 6), round(row[1], 6))


def tilejson(layer: TileLayer, *, tiles_url: str, bounds: tuple[float, float, float, float],
             centre: tuple[float, float]) -> dict:
    """The TileJSON 3.0.0 document of ``layer``.

    Args:
        layer: the layer.
        tiles_url: the absolute URL template of its tiles (``…/{z}/{x}/{y}.mvt``, with the query, if any).
        bounds: the lon/lat box every feature lies in (clients ask for no tile outside it): the city's centre ± the
            radius imports and edits keep every feature within.
        centre: where a map starts.
    """
    vector_layer = {"id": layer.id, "description": layer.description, "minzoom": layer.minzoom,
                    "maxzoom": layer.maxzoom, "fields": layer.fields, **layer.extra}
    return {
        "tilejson": "3.0.0",
        "name": layer.id,
        "description": f"{layer.table.title}: {layer.description}",
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": layer.minzoom,
        "maxzoom": layer.maxzoom,
        "bounds": [round(v, 6) for v in bounds],
        "center": [*centre, max(layer.minzoom, 13)],
        "vector_layers": [vector_layer],
    }
