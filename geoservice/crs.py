"""Coordinate conversions: WGS 84, GCJ-02 and BD-09, plus the metric CRS and geodesic distances.

Everything geoservice stores is WGS 84 (EPSG:4326). Maps and apps used in China are not:

* **GCJ-02** ("Mars coordinates", 国测局坐标) is the datum Chinese law requires of published maps. Amap (Gaode),
  Tencent Maps and Google Maps' China tiles use it, and Amap's navigation URI (``coordinate=gaode``) expects it:
  a WGS 84 point given to Amap lands a few hundred metres off.
* **BD-09** is Baidu's own further offset of GCJ-02, used by Baidu Maps unless told ``coord_type=wgs84``.

The WGS 84 → GCJ-02 offset is a published (leaked, widely reimplemented) closed-form formula: two polynomial plus
sine series in (lon - 105°, lat - 35°) give an offset in metres, turned into degrees with the radii of curvature of
the Krasovsky 1940 ellipsoid. It applies only inside a rough box around mainland China; points outside are returned
unchanged. The formula has no closed-form inverse, so GCJ-02 → WGS 84 is a fixed-point iteration
``w ← w - (forward(w) - g)``, which converges because the offset changes slowly with position (a few iterations
reach 1e-9°, well under a millimetre). GCJ-02 ↔ BD-09 uses Baidu's published ``x_pi = π·3000/180`` formula
forward; its usual closed-form inverse is only an approximation (up to ~0.25 m off), so it is the starting point
of the same kind of iteration. Either inverse then reproduces its forward transform to < 1 mm, so converting to
GCJ-02 or BD-09 and back returns the same point.

The metric CRS belongs to the city (:func:`metric_crs_for`): for a city in China the CGCS2000 3° Gauss–Krüger zone
whose central meridian is nearest (EPSG:4534–4554, the national survey's own; scale error under 0.04 % within its
zone), elsewhere the WGS 84 UTM zone (EPSG:326xx/327xx, scale error between −0.04 % and +0.1 % within its zone), and
UPS near the poles. A projected CRS rather than ``geography`` everywhere, because coverage cuts streets at exact
fractions, merges intervals and buffers bands — planar operations PostGIS has only for geometry, and several times
faster there; the zone keeps them within 0.1 % of the geodesic answer. A configured CRS is checked against its
area of use (:func:`check_metric_crs`): a CRS used outside it is refused, naming the right zone.

The array functions (``*_array``) are the implementation and work on numpy arrays of any shape (importers convert
millions of points); the scalar functions call them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyproj import CRS, Geod, Proj, Transformer
from pyproj.exceptions import CRSError

from geoservice.errors import InvalidParameter

__all__ = [
    "SYSTEMS",
    "bd09_to_gcj02",
    "bd09_to_gcj02_array",
    "bd09_to_wgs84",
    "bd09_to_wgs84_array",
    "from_wgs84",
    "from_wgs84_array",
    "gcj02_to_bd09",
    "gcj02_to_bd09_array",
    "gcj02_to_wgs84",
    "gcj02_to_wgs84_array",
    "geodesic_distance_m",
    "check_metric_crs",
    "in_china",
    "metric_crs_for",
    "metric_transformer",
    "to_wgs84",
    "to_wgs84_array",
    "wgs84_to_bd09",
    "wgs84_to_bd09_array",
    "wgs84_to_gcj02",
    "wgs84_to_gcj02_array",
]

FloatArray = NDArray[np.float64]
ArrayPair = tuple[FloatArray, FloatArray]

#: Coordinate systems ``to_wgs84`` / ``from_wgs84`` accept.
SYSTEMS = ("wgs84", "gcj02", "bd09")

# Krasovsky 1940 ellipsoid, as used by the GCJ-02 formula.
_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323  # first eccentricity squared

# Rough box around mainland China in which the GCJ-02 offset applies (the usual one; it includes some neighbours).
_CHINA_LON = (72.004, 137.8347)
_CHINA_LAT = (0.8293, 55.8271)

# Baidu's constants for GCJ-02 -> BD-09.
_X_PI = math.pi * 3000.0 / 180.0
_BD_DLON = 0.0065
_BD_DLAT = 0.006

# Inverse iterations stop when every point's residual is below this many degrees (~0.1 mm), or after this many.
_TOLERANCE_DEG = 1e-9
_MAX_ITERATIONS = 30

_GEOD = Geod(ellps="WGS84")


def _as_arrays(lons: ArrayLike, lats: ArrayLike) -> ArrayPair:
    """Float64 copies of ``lons`` and ``lats`` broadcast to one shape."""
    lon, lat = np.broadcast_arrays(np.asarray(lons, dtype=np.float64), np.asarray(lats, dtype=np.float64))
    return lon.copy(), lat.copy()


def in_china(lons: ArrayLike, lats: ArrayLike) -> NDArray[np.bool_]:
    """Whether each point is inside the rough mainland-China box where GCJ-02 differs from WGS 84.

    Args:
        lons: longitudes in degrees (scalar or array).
        lats: latitudes in degrees, broadcastable against ``lons``.

    Returns:
        A boolean array of the broadcast shape; NaN coordinates are outside.
    """
    lon, lat = _as_arrays(lons, lats)
    return (lon >= _CHINA_LON[0]) & (lon <= _CHINA_LON[1]) & (lat >= _CHINA_LAT[0]) & (lat <= _CHINA_LAT[1])


def _gcj02_offset(lon: FloatArray, lat: FloatArray) -> ArrayPair:
    """The GCJ-02 minus WGS-84 offset (dlon, dlat) in degrees at WGS-84 (lon, lat), ignoring the China box."""
    x = lon - 105.0
    y = lat - 35.0
    # Shared high-frequency term of both series.
    wiggle = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    north_m = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x)) + wiggle
               + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
               + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y / 30.0 * np.pi)) * 2.0 / 3.0)
    east_m = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x)) + wiggle
              + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
              + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0)
    # Metres to degrees with the Krasovsky meridional (M) and prime-vertical (N) radii of curvature.
    phi = np.radians(lat)
    w2 = 1.0 - _KRASOVSKY_EE * np.sin(phi) ** 2
    meridional = _KRASOVSKY_A * (1.0 - _KRASOVSKY_EE) / (w2 * np.sqrt(w2))
    prime_vertical = _KRASOVSKY_A / np.sqrt(w2)
    dlat = np.degrees(north_m / meridional)
    dlon = np.degrees(east_m / (prime_vertical * np.cos(phi)))
    return dlon, dlat


def _invert(forward: Callable[[FloatArray, FloatArray], ArrayPair], lon: FloatArray, lat: FloatArray, *,
            start: ArrayPair, tolerance: float, max_iterations: int) -> ArrayPair:
    """Solve ``forward(x) == (lon, lat)`` by fixed-point iteration ``x <- x - (forward(x) - target)``.

    Each point stops on its own once its residual is below ``tolerance``, so a point converts the same alone or in
    a batch. Points that are not finite come back as ``start`` gives them.
    """
    x_lon, x_lat = np.array(start[0], dtype=np.float64), np.array(start[1], dtype=np.float64)
    flat_lon, flat_lat = x_lon.reshape(-1), x_lat.reshape(-1)  # views: writing them fills x_lon, x_lat
    t_lon, t_lat = np.asarray(lon, dtype=np.float64).reshape(-1), np.asarray(lat, dtype=np.float64).reshape(-1)
    idx = np.flatnonzero(np.isfinite(t_lon) & np.isfinite(t_lat) & np.isfinite(flat_lon) & np.isfinite(flat_lat))
    t_lon, t_lat = t_lon[idx], t_lat[idx]
    a_lon, a_lat = flat_lon[idx], flat_lat[idx]
    for _ in range(max_iterations):
        if idx.size == 0:
            break
        f_lon, f_lat = forward(a_lon, a_lat)
        r_lon, r_lat = f_lon - t_lon, f_lat - t_lat
        a_lon, a_lat = a_lon - r_lon, a_lat - r_lat
        flat_lon[idx], flat_lat[idx] = a_lon, a_lat
        going = (np.abs(r_lon) >= tolerance) | (np.abs(r_lat) >= tolerance)
        idx, t_lon, t_lat, a_lon, a_lat = idx[going], t_lon[going], t_lat[going], a_lon[going], a_lat[going]
    return x_lon, x_lat


def wgs84_to_gcj02_array(lons: ArrayLike, lats: ArrayLike) -> ArrayPair:
    """WGS 84 → GCJ-02 for arrays of points (the published forward formula).

    Args:
        lons: WGS-84 longitudes in degrees (any shape).
        lats: WGS-84 latitudes in degrees, broadcastable against ``lons``.

    Returns:
        GCJ-02 ``(lons, lats)`` arrays of the broadcast shape; points outside the China box are unchanged.
    """
    lon, lat = _as_arrays(lons, lats)
    inside = in_china(lon, lat)
    dlon, dlat = _gcj02_offset(lon[inside], lat[inside])
    lon[inside] += dlon
    lat[inside] += dlat
    return lon, lat


def gcj02_to_wgs84_array(lons: ArrayLike, lats: ArrayLike, *, tolerance: float = _TOLERANCE_DEG,
                         max_iterations: int = _MAX_ITERATIONS) -> ArrayPair:
    """GCJ-02 → WGS 84 for arrays of points, by iterating the forward formula.

    Args:
        lons: GCJ-02 longitudes in degrees (any shape).
        lats: GCJ-02 latitudes in degrees, broadcastable against ``lons``.
        tolerance: stop when every point's residual is below this many degrees.
        max_iterations: stop after this many iterations regardless.

    Returns:
        WGS-84 ``(lons, lats)`` arrays; points outside the China box are unchanged. Within a few hundred metres
        of the box edge the forward transform is discontinuous and has no exact inverse.
    """
    lon, lat = _as_arrays(lons, lats)
    inside = in_china(lon, lat)
    w_lon, w_lat = _invert(_gcj02_offset_applied, lon[inside], lat[inside], start=(lon[inside], lat[inside]),
                           tolerance=tolerance, max_iterations=max_iterations)
    lon[inside], lat[inside] = w_lon, w_lat
    return lon, lat


def _gcj02_offset_applied(lon: FloatArray, lat: FloatArray) -> ArrayPair:
    """WGS 84 → GCJ-02 without the China-box test (for points already known to be inside)."""
    dlon, dlat = _gcj02_offset(lon, lat)
    return lon + dlon, lat + dlat


def gcj02_to_bd09_array(lons: ArrayLike, lats: ArrayLike) -> ArrayPair:
    """GCJ-02 → BD-09 for arrays of points (Baidu's published formula; applied everywhere, as Baidu does).

    Args:
        lons: GCJ-02 longitudes in degrees (any shape).
        lats: GCJ-02 latitudes in degrees, broadcastable against ``lons``.

    Returns:
        BD-09 ``(lons, lats)`` arrays of the broadcast shape.
    """
    lon, lat = _as_arrays(lons, lats)
    radius = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return radius * np.cos(theta) + _BD_DLON, radius * np.sin(theta) + _BD_DLAT


def _bd09_to_gcj02_approx(lon: FloatArray, lat: FloatArray) -> ArrayPair:
    """Baidu's usual closed-form BD-09 → GCJ-02, good to ~0.25 m: the starting point of the exact inverse."""
    x = lon - _BD_DLON
    y = lat - _BD_DLAT
    radius = np.hypot(x, y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return radius * np.cos(theta), radius * np.sin(theta)


def bd09_to_gcj02_array(lons: ArrayLike, lats: ArrayLike, *, tolerance: float = _TOLERANCE_DEG,
                        max_iterations: int = _MAX_ITERATIONS) -> ArrayPair:
    """BD-09 → GCJ-02 for arrays of points: the closed-form inverse refined until it undoes ``gcj02_to_bd09``.

    Args:
        lons: BD-09 longitudes in degrees (any shape).
        lats: BD-09 latitudes in degrees, broadcastable against ``lons``.
        tolerance: stop when every point's residual is below this many degrees.
        max_iterations: stop after this many iterations regardless.

    Returns:
        GCJ-02 ``(lons, lats)`` arrays of the broadcast shape.
    """
    lon, lat = _as_arrays(lons, lats)
    return _invert(gcj02_to_bd09_array, lon, lat, start=_bd09_to_gcj02_approx(lon, lat), tolerance=tolerance,
                   max_iterations=max_iterations)


def wgs84_to_bd09_array(lons: ArrayLike, lats: ArrayLike) -> ArrayPair:
    """WGS 84 → BD-09 for arrays of points (through GCJ-02).

    Args:
        lons: WGS-84 longitudes in degrees (any shape).
        lats: WGS-84 latitudes in degrees, broadcastable against ``lons``.

    Returns:
        BD-09 ``(lons, lats)`` arrays of the broadcast shape.
    """
    return gcj02_to_bd09_array(*wgs84_to_gcj02_array(lons, lats))


def bd09_to_wgs84_array(lons: ArrayLike, lats: ArrayLike, *, tolerance: float = _TOLERANCE_DEG,
                        max_iterations: int = _MAX_ITERATIONS) -> ArrayPair:
    """BD-09 → WGS 84 for arrays of points (through GCJ-02, both steps iterative).

    Args:
        lons: BD-09 longitudes in degrees (any shape).
        lats: BD-09 latitudes in degrees, broadcastable against ``lons``.
        tolerance: stop each step when every point's residual is below this many degrees.
        max_iterations: iteration limit of each step.

    Returns:
        WGS-84 ``(lons, lats)`` arrays of the broadcast shape.
    """
    options = {"tolerance": tolerance, "max_iterations": max_iterations}
    return gcj02_to_wgs84_array(*bd09_to_gcj02_array(lons, lats, **options), **options)


def _scalar(pair: ArrayPair) -> tuple[float, float]:
    return float(pair[0]), float(pair[1])


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """WGS 84 → GCJ-02 for one point.

    Args:
        lon: WGS-84 longitude in degrees.
        lat: WGS-84 latitude in degrees.

    Returns:
        The GCJ-02 ``(lon, lat)``; unchanged outside the China box.
    """
    return _scalar(wgs84_to_gcj02_array(lon, lat))


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 → WGS 84 for one point (iterative; reproduces the forward transform to < 1 mm).

    Args:
        lon: GCJ-02 longitude in degrees.
        lat: GCJ-02 latitude in degrees.

    Returns:
        The WGS-84 ``(lon, lat)``; unchanged outside the China box.
    """
    return _scalar(gcj02_to_wgs84_array(lon, lat))


def gcj02_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 → BD-09 for one point.

    Args:
        lon: GCJ-02 longitude in degrees.
        lat: GCJ-02 latitude in degrees.

    Returns:
        The BD-09 ``(lon, lat)``.
    """
    return _scalar(gcj02_to_bd09_array(lon, lat))


def bd09_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """BD-09 → GCJ-02 for one point (iterative; reproduces the forward transform to < 1 mm).

    Args:
        lon: BD-09 longitude in degrees.
        lat: BD-09 latitude in degrees.

    Returns:
        The GCJ-02 ``(lon, lat)``.
    """
    return _scalar(bd09_to_gcj02_array(lon, lat))


def wgs84_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """WGS 84 → BD-09 for one point.

    Args:
        lon: WGS-84 longitude in degrees.
        lat: WGS-84 latitude in degrees.

    Returns:
        The BD-09 ``(lon, lat)``.
    """
    return _scalar(wgs84_to_bd09_array(lon, lat))


def bd09_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """BD-09 → WGS 84 for one point (iterative through GCJ-02).

    Args:
        lon: BD-09 longitude in degrees.
        lat: BD-09 latitude in degrees.

    Returns:
        The WGS-84 ``(lon, lat)``.
    """
    return _scalar(bd09_to_wgs84_array(lon, lat))


def _identity(lons: ArrayLike, lats: ArrayLike) -> ArrayPair:
    return _as_arrays(lons, lats)


_TO_WGS84: dict[str, Callable[[ArrayLike, ArrayLike], ArrayPair]] = {
    "wgs84": _identity, "gcj02": gcj02_to_wgs84_array, "bd09": bd09_to_wgs84_array}
_FROM_WGS84: dict[str, Callable[[ArrayLike, ArrayLike], ArrayPair]] = {
    "wgs84": _identity, "gcj02": wgs84_to_gcj02_array, "bd09": wgs84_to_bd09_array}


def _conversion(table: dict[str, Callable[[ArrayLike, ArrayLike], ArrayPair]],
                system: str) -> Callable[[ArrayLike, ArrayLike], ArrayPair]:
    key = system.strip().lower() if isinstance(system, str) else system
    if key not in table:
        raise InvalidParameter(f"coordinate system must be one of {', '.join(SYSTEMS)}; got {system!r}")
    return table[key]


def to_wgs84_array(lons: ArrayLike, lats: ArrayLike, system: str) -> ArrayPair:
    """Arrays of points in ``system`` converted to WGS 84.

    Args:
        lons: longitudes in degrees in ``system``.
        lats: latitudes in degrees in ``system``.
        system: one of ``SYSTEMS`` ("wgs84", "gcj02", "bd09"; case-insensitive).

    Returns:
        WGS-84 ``(lons, lats)`` arrays.

    Raises:
        InvalidParameter: ``system`` is not one of ``SYSTEMS``.
    """
    return _conversion(_TO_WGS84, system)(lons, lats)


def from_wgs84_array(lons: ArrayLike, lats: ArrayLike, system: str) -> ArrayPair:
    """Arrays of WGS-84 points converted to ``system``.

    Args:
        lons: WGS-84 longitudes in degrees.
        lats: WGS-84 latitudes in degrees.
        system: one of ``SYSTEMS`` ("wgs84", "gcj02", "bd09"; case-insensitive).

    Returns:
        ``(lons, lats)`` arrays in ``system``.

    Raises:
        InvalidParameter: ``system`` is not one of ``SYSTEMS``.
    """
    return _conversion(_FROM_WGS84, system)(lons, lats)


def to_wgs84(lon: float, lat: float, system: str) -> tuple[float, float]:
    """One point in ``system`` converted to WGS 84.

    Args:
        lon: longitude in degrees in ``system``.
        lat: latitude in degrees in ``system``.
        system: one of ``SYSTEMS`` ("wgs84", "gcj02", "bd09"; case-insensitive).

    Returns:
        The WGS-84 ``(lon, lat)``.

    Raises:
        InvalidParameter: ``system`` is not one of ``SYSTEMS``.
    """
    return _scalar(to_wgs84_array(lon, lat, system))


def from_wgs84(lon: float, lat: float, system: str) -> tuple[float, float]:
    """One WGS-84 point converted to ``system``.

    Args:
        lon: WGS-84 longitude in degrees.
        lat: WGS-84 latitude in degrees.
        system: one of ``SYSTEMS`` ("wgs84", "gcj02", "bd09"; case-insensitive).

    Returns:
        The ``(lon, lat)`` in ``system``.

    Raises:
        InvalidParameter: ``system`` is not one of ``SYSTEMS``.
    """
    return _scalar(from_wgs84_array(lon, lat, system))


@lru_cache(maxsize=16)
def metric_transformer(metric_crs: str) -> tuple[Transformer, Transformer]:
    """Cached transformers between WGS 84 and a projected metric CRS, both in (x, y) = (lon/easting, lat/northing).

    ``always_xy=True`` matters: EPSG:4326 is natively (lat, lon) and Gauss–Krüger zones such as EPSG:4547 (CGCS2000 /
    3-degree Gauss-Kruger CM 114E) are natively (northing, easting). pyproj Transformers are thread-safe (pyproj
    >= 3.1), so the cached pair can be shared by request threads.

    Args:
        metric_crs: the city's projected CRS from the settings (``"EPSG:<code>"``).

    Returns:
        ``(to_metric, to_wgs84)``: WGS 84 → metric CRS and metric CRS → WGS 84.

    Raises:
        InvalidParameter: pyproj does not know ``metric_crs``.
    """
    try:
        to_metric = Transformer.from_crs("EPSG:4326", metric_crs, always_xy=True)
        to_wgs84 = Transformer.from_crs(metric_crs, "EPSG:4326", always_xy=True)
    except CRSError as exc:
        raise InvalidParameter(f"metric_crs {metric_crs!r} is not a coordinate reference system pyproj knows") from exc
    return to_metric, to_wgs84


def geodesic_distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """The geodesic distance in metres between two WGS-84 points, on the WGS-84 ellipsoid.

    Args:
        lon1: longitude of the first point in degrees.
        lat1: latitude of the first point in degrees.
        lon2: longitude of the second point in degrees.
        lat2: latitude of the second point in degrees.

    Returns:
        The distance in metres.
    """
    _, _, distance = _GEOD.inv(lon1, lat1, lon2, lat2)
    return float(distance)


# CGCS2000 / 3-degree Gauss-Kruger CM 75E is EPSG:4534, and each next central meridian (3° east) the next code, to
# CM 135E (EPSG:4554).
_GK3_FIRST_CM, _GK3_LAST_CM, _GK3_FIRST_EPSG = 75, 135, 4534
# How far outside its area of use a CRS may still be used (degrees): a city's edge may cross a zone boundary; half
# a degree beyond it the scale error of a 3° or 6° zone is still about 0.1 %.
AREA_OF_USE_MARGIN_DEG = 0.5


def metric_crs_for(lon: float, lat: float) -> str:
    """The metric CRS for a city centred at (lon, lat), as ``"EPSG:<code>"``.

    In China: the CGCS2000 3° Gauss–Krüger zone with the nearest central meridian (e.g. EPSG:4547, CM 114E, for
    Xuchang), when (lon, lat) lies in that zone's area of use. Elsewhere between 80° S and 84° N: the WGS 84 UTM
    zone (e.g. EPSG:32635 for Helsinki). Nearer the poles: UPS North / South.

    Raises:
        InvalidParameter: lon/lat are not a position.
    """
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidParameter(f"the city centre must be lon within -180..180 and lat within -90..90, got {lon}, {lat}")
    central = 3 * round(lon / 3)
    if _GK3_FIRST_CM <= central <= _GK3_LAST_CM:
        code = f"EPSG:{_GK3_FIRST_EPSG + (central - _GK3_FIRST_CM) // 3}"
        west, south, east, north = CRS(code).area_of_use.bounds
        if west <= lon <= east and south <= lat <= north:
            return code
    if lat >= 84:
        return "EPSG:32661"
    if lat < -80:
        return "EPSG:32761"
    zone = min(60, int((lon + 180) // 6) + 1)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def scale_error(metric_crs: str, lon: float, lat: float) -> float:
    """How much longer than on the ellipsoid a short length at (lon, lat) is in ``metric_crs`` (0.15 = 15 %).

    NaN where the projection is undefined.
    """
    try:
        factors = Proj(CRS(metric_crs)).get_factors(lon, lat)
    except (CRSError, ValueError, ArithmeticError):
        return math.nan
    return float(factors.meridional_scale) - 1.0


@lru_cache(maxsize=16)
def _area_of_use(metric_crs: str) -> tuple[float, float, float, float] | None:
    area = CRS(metric_crs).area_of_use
    return None if area is None else tuple(area.bounds)


def within_area_of_use(metric_crs: str, lon: float, lat: float) -> bool:
    """Whether (lon, lat) lies where ``metric_crs`` may be used (its area of use, with the margin)."""
    bounds = _area_of_use(metric_crs)
    if bounds is None:
        return True
    west, south, east, north = bounds
    m = AREA_OF_USE_MARGIN_DEG
    return west - m <= lon <= east + m and south - m <= lat <= north + m


def check_metric_crs(metric_crs: str, lon: float, lat: float, *, what: str = "the city centre") -> str:
    """``metric_crs`` if it is a projected CRS in metres whose area of use holds (lon, lat), else a refusal.

    Args:
        metric_crs: ``"EPSG:<code>"``.
        lon: longitude of the place it is used for.
        lat: latitude of the place it is used for.
        what: what the place is, for the message.

    Raises:
        InvalidParameter: not a projected CRS in metres, or (lon, lat) outside its area of use (the message names
            the CRS to use instead and how far off lengths would be).
    """
    authority, _, code = metric_crs.partition(":")
    if authority.upper() != "EPSG" or not code.isdigit():
        raise InvalidParameter(f"the metric CRS must be EPSG:<code> of a projected CRS in metres, got {metric_crs!r}")
    try:
        crs = CRS(metric_crs)
    except CRSError as exc:
        raise InvalidParameter(f"the metric CRS {metric_crs} is not a CRS pyproj knows") from exc
    if not crs.is_projected or crs.axis_info[0].unit_name != "metre":
        raise InvalidParameter(f"the metric CRS {metric_crs} ({crs.name}) is not a projected CRS in metres")
    area = crs.area_of_use
    if area is not None:
        west, south, east, north = area.bounds
        m = AREA_OF_USE_MARGIN_DEG
        if not (west - m <= lon <= east + m and south - m <= lat <= north + m):
            right = metric_crs_for(lon, lat)
            error = scale_error(metric_crs, lon, lat)
            off = f"; lengths there would be {100 * error:+.1f} % off" if math.isfinite(error) else ""
            raise InvalidParameter(
                f"the metric CRS {metric_crs} ({crs.name}) is meant for {west:g}..{east:g} E, {south:g}..{north:g} N, "
                f"but {what} ({lon:g}, {lat:g}) lies outside it{off}. Use {right} ({CRS(right).name}), or leave "
                "GEOSERVICE_METRIC_CRS unset to have it chosen from GEOSERVICE_CITY_CENTER")
    return metric_crs

