"""Validation of request parameters and command arguments, with messages that say what is allowed.

Every function takes the raw string (or None) and returns a typed value or raises
:class:`geoservice.errors.InvalidParameter` naming the parameter and the allowed values.
"""

from __future__ import annotations

import math

from geoservice.errors import InvalidParameter

BBox = tuple[float, float, float, float]


def parse_float(name: str, raw: str | None, *, default: float | None = None, minimum: float | None = None,
                maximum: float | None = None) -> float | None:
    """A finite number within [minimum, maximum]."""
    if raw is None or raw == "":
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
    if raw is None or raw == "":
        return None
    parts = raw.split(",")
    if len(parts) != 4:
        raise InvalidParameter(f"bbox must be minlon,minlat,maxlon,maxlat (4 numbers), got {raw!r}")
    names = ("bbox minlon", "bbox minlat", "bbox maxlon", "bbox maxlat")
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
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise InvalidParameter(f"{name} must be one of {', '.join(allowed)}; got {raw!r}")
    return raw
