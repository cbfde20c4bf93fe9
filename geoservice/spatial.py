"""Spatial helpers the core shares: the metric CRS's SRID, lon/lat search boxes in metres, JIT off for PostGIS.

The metric CRS itself belongs to the city (``geoservice.config``); every function here takes it from the caller.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.errors import InvalidParameter
from geoservice.query import BBox

BOX_MARGIN_M = 10.0
"""Margin added to every search box, in metres: rounding of degrees, the ellipsoid's curvature."""


def metric_srid(conn: Connection, metric_crs: str) -> int:
    """The SRID of ``metric_crs`` ("EPSG:<code>"), checked against the database's ``spatial_ref_sys``.

    Raises:
        InvalidParameter: not of the form EPSG:<code>, or unknown to PostGIS.
    """
    authority, _, code = metric_crs.partition(":") if isinstance(metric_crs, str) else ("", "", "")
    if authority.upper() != "EPSG" or not code.isdigit():
        raise InvalidParameter(f"metric_crs must be EPSG:<code> of a projected CRS in metres, got {metric_crs!r}")
    found = conn.execute(sa.text("SELECT srid FROM spatial_ref_sys WHERE auth_name = 'EPSG' AND auth_srid = :c"),
                         {"c": int(code)}).scalar()
    if found is None:
        raise InvalidParameter(f"metric_crs {metric_crs!r} is not known to PostGIS (spatial_ref_sys)")
    return int(found)


@contextmanager
def without_jit(conn: Connection) -> Iterator[None]:
    """Run the enclosed queries with PostgreSQL's JIT compiler off, then restore the setting.

    PostGIS and pgRouting functions declare high planner costs, so their queries pass ``jit_above_cost`` although
    they run in well under a second; compiling them would add a few hundred milliseconds to each. The setting is
    changed for the current transaction only (``set_config(..., true)``) and put back afterwards; if a query fails,
    the caller's rollback restores it.
    """
    previous = conn.execute(sa.text("SELECT current_setting('jit')")).scalar_one()
    conn.execute(sa.text("SELECT set_config('jit', 'off', true)"))
    yield
    conn.execute(sa.text("SELECT set_config('jit', :previous, true)"), {"previous": previous})



def _degrees(lat: float, metres: float) -> tuple[float, float]:
    """(dlon, dlat): degrees that span at least ``metres`` east-west and north-south near latitude ``lat``."""
    dlat = metres / 110_500.0  # a degree of latitude is at least 110.57 km
    cos_lat = math.cos(math.radians(min(89.0, abs(lat) + dlat)))
    return 1.01 * metres / (111_320.0 * max(cos_lat, 0.01)), dlat


def box_around(lon: float, lat: float, metres: float) -> BBox:
    """A lon/lat box holding every place within ``metres`` of (lon, lat), a little generously."""
    dlon, dlat = _degrees(lat, metres)
    return (lon - dlon, max(-90.0, lat - dlat), lon + dlon, min(90.0, lat + dlat))


def expand_box(bbox: BBox, metres: float) -> BBox:
    """``bbox`` grown by ``metres`` on every side (generously, as :func:`box_around`)."""
    minx, miny, maxx, maxy = bbox
    dlon, dlat = _degrees(max(abs(miny), abs(maxy)), metres)
    return (minx - dlon, max(-90.0, miny - dlat), maxx + dlon, min(90.0, maxy + dlat))


def box_params(bbox: BBox | None) -> dict:
    """The SQL parameters ``x0, y0, x1, y1`` of a box (all None without one), as :func:`in_box_sql` reads them."""
    keys = ("x0", "y0", "x1", "y1")
    return dict(zip(keys, bbox if bbox is not None else (None,) * 4, strict=True))



def in_box_sql(column: str, srid: int = 4326) -> str:
    """The condition "``column`` meets the box ``:x0, :y0, :x1, :y1``" (bind :func:`box_params`).

    ST_Intersects, not a bare ``&&``: the index boxes are single precision and take in features up to ~1 m outside.
    """
    return f"ST_Intersects({column}, ST_MakeEnvelope(:x0, :y0, :x1, :y1, {srid}))"
