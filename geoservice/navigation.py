"""Links that open a point in the navigation apps people in China use.

Amap's URI API takes GCJ-02 coordinates (``coordinate=gaode``); giving it WGS 84 puts the marker a few hundred
metres off. Baidu's web API accepts WGS 84 when told ``coord_type=wgs84``, so no conversion is needed there. The
GCJ-02 values are in the links for reference too.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote, urlencode

from geoservice.crs import wgs84_to_gcj02, wgs84_to_gcj02_array

SOURCE = "geoservice"


def links(*, lon: float, lat: float, name: str, origin: tuple[float, float] | None = None) -> dict:
    """Amap and Baidu walking-navigation links to (lon, lat) named ``name``, optionally from ``origin``."""
    return _links(lon, lat, name, wgs84_to_gcj02(lon, lat), origin,
                  wgs84_to_gcj02(*origin) if origin is not None else None)


def links_to_each(places: Sequence[tuple[float, float, str]], *,
                  origin: tuple[float, float] | None = None) -> list[dict]:
    """:func:`links` to each ``(lon, lat, name)``.

    The positions are converted to GCJ-02 all at once: one numpy call per answer, not two per place (for a few
    points the call's overhead is most of its cost).
    """
    if not places:
        return []
    spots = [(lon, lat) for lon, lat, _ in places] + ([origin] if origin is not None else [])
    g_lons, g_lats = wgs84_to_gcj02_array([s[0] for s in spots], [s[1] for s in spots])
    converted = [(float(x), float(y)) for x, y in zip(g_lons, g_lats, strict=True)]
    origin_gcj = converted[-1] if origin is not None else None
    return [_links(lon, lat, name, converted[n], origin, origin_gcj) for n, (lon, lat, name) in enumerate(places)]


def _links(lon: float, lat: float, name: str, gcj: tuple[float, float], origin: tuple[float, float] | None,
           origin_gcj: tuple[float, float] | None) -> dict:
    g_lon, g_lat = gcj
    amap = {"to": f"{g_lon:.6f},{g_lat:.6f},{name}", "mode": "walk", "coordinate": "gaode", "callnative": "1",
            "src": SOURCE}
    baidu = {"destination": f"latlng:{lat:.6f},{lon:.6f}|name:{name}", "mode": "walking", "coord_type": "wgs84",
             "output": "html", "src": SOURCE}
    if origin is not None:
        o_lon, o_lat = origin_gcj
        amap["from"] = f"{o_lon:.6f},{o_lat:.6f},我的位置"
        baidu["origin"] = f"latlng:{origin[1]:.6f},{origin[0]:.6f}|name:我的位置"
    return {
        "amap": "https://uri.amap.com/navigation?" + urlencode(amap, quote_via=quote, safe=",:|"),
        "baidu": "https://api.map.baidu.com/direction?" + urlencode(baidu, quote_via=quote, safe=",:|"),
        "gcj02": [round(g_lon, 7), round(g_lat, 7)],
    }
