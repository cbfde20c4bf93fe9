"""Validation of request parameters and command arguments, with messages that say what is allowed.

Every function takes the raw string (None when the parameter is absent) and returns a typed value or raises
:class:`geoservice.errors.InvalidParameter` naming the parameter and the allowed values. An absent parameter takes
its default; a parameter given empty (``mode=``) is refused — the documents allow no empty value, and a silent
default would hide a client's mistake.
"""

from __future__ import annotations

import math

from geoservice.errors import InvalidParameter
from geoservice.query import BBox


def absent(name: str, raw: str | None) -> bool:
    """Whether the parameter was left out; given empty (or blank) it is refused."""
    if raw is None:
        return True
    if not raw.strip():
        raise InvalidParameter(f"{name} is empty: give a value or leave the parameter out")
    return False


def parse_float(name: str, raw: str | None, *, default: float | None = None, minimum: float | None = None,
                maximum: float | None = None) -> float | None:
    """A finite number within [minimum, maximum]."""
    if absent(name, raw):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidParameter(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise InvalidParameter(f"{name} must be a finite number, got {raw!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InvalidParameter(f"{name} must be between {minimum} and {maximum}, got {raw}")
    return value


def parse_bbox(raw: str | None) -> BBox | None:
    """``minlon,minlat,maxlon,maxlat`` in WGS 84, or None when absent."""
    if absent("bbox", raw):
        return None
    parts = raw.split(",")
    if len(parts) != 4:
        raise InvalidParameter(f"bbox must be minlon,minlat,maxlon,maxlat (4 numbers), got {raw!r}")
    names = ("bbox minlon", "bbox minlat", "bbox maxlon", "bbox maxlat")
    empty = [n for n, p in zip(names, parts, strict=True) if not p.strip()]
    if empty:
        raise InvalidParameter(f"{empty[0]} is empty: bbox must be minlon,minlat,maxlon,maxlat (4 numbers), "
                               f"got {raw!r}")
    limits = ((-180, 180), (-90, 90), (-180, 180), (-90, 90))
    minx, miny, maxx, maxy = (parse_float(n, p.strip(), minimum=lo, maximum=hi)
                              for n, p, (lo, hi) in zip(names, parts, limits, strict=True))
    if minx > maxx:
        raise InvalidParameter(f"bbox minlon ({minx}) must not be greater than maxlon ({maxx})")
    if miny > maxy:
        raise InvalidParameter(f"bbox minlat ({miny}) must not be greater than maxlat ({maxy})")
    return (minx, miny, maxx, maxy)


def parse_choice(name: str, raw: str | None, allowed: tuple[str, ...], *, default: str | None = None) -> str | None:
    """One of ``allowed``."""
    if absent(name, raw):
        return default
    if raw not in allowed:
        raise InvalidParameter(f"{name} must be one of {', '.join(allowed)}; got {raw!r}")
    return raw


def parse_int(name: str, raw: str | None, *, default: int, minimum: int, maximum: int) -> int:
    """A whole number within [minimum, maximum]."""
    if absent(name, raw):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(f"{name} must be a whole number between {minimum} and {maximum}, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise InvalidParameter(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def parse_bool(name: str, raw: str | None, *, default: bool = False) -> bool:
    """true/false (also 1/0, yes/no, on/off)."""
    if absent(name, raw):
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidParameter(f"{name} must be true or false, got {raw!r}")


def parse_lonlat(raw_lon: str | None, raw_lat: str | None) -> tuple[float, float]:
    """A WGS 84 position from ``lon`` and ``lat``; both required; swapped values are detected and named."""
    if raw_lon in (None, "") or raw_lat in (None, ""):
        missing = [n for n, v in (("lon", raw_lon), ("lat", raw_lat)) if v in (None, "")]
        raise InvalidParameter(f"{' and '.join(missing)} required: WGS 84 longitude and latitude in degrees, "
                               "e.g. lon=113.826&lat=34.026")
    lon = parse_float("lon", raw_lon)
    lat = parse_float("lat", raw_lat)
    if abs(lat) > 90 and abs(lon) <= 90:
        raise InvalidParameter(f"lon and lat look swapped (lon={raw_lon}, lat={raw_lat}): lat must be within -90..90;"
                               f" did you mean lon={raw_lat}&lat={raw_lon}?")
    if not -180 <= lon <= 180:
        raise InvalidParameter(f"lon must be between -180 and 180, got {raw_lon}")
    if not -90 <= lat <= 90:
        raise InvalidParameter(f"lat must be between -90 and 90, got {raw_lat}")
    return lon, lat


def parse_list(name: str, values: list[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Repeated (``kind=a&kind=b``) or comma-separated (``kind=a,b``) values, each one of ``allowed``."""
    if any(not v.strip() for raw in values for v in raw.split(",")):
        raise InvalidParameter(f"{name} has an empty value; allowed: {', '.join(allowed)}")
    items = tuple(dict.fromkeys(v.strip() for raw in values for v in raw.split(",")))
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise InvalidParameter(f"unknown {name} {unknown[0]!r}; allowed: {', '.join(allowed)}")
    return items
