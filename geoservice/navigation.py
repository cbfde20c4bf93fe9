"""Links that open a point in the navigation apps people in China use.

Amap's URI API takes GCJ-02 coordinates (``coordinate=gaode``); giving it WGS 84 puts the marker a few hundred
metres off. Baidu's web API accepts WGS 84 when told ``coord_type=wgs84``, so no conversion is needed there. The
GCJ-02 values are in the links for reference too.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from geoservice.crs import wgs84_to_gcj02

SOURCE = "geoservice"


def links(*, lon: float, lat: float, name: str, origin: tuple[float, float] | None = None) -> dict:
    """Amap and Baidu walking-navigation links to (lon, lat) named ``name``, optionally from ``origin``."""
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    amap = {"to": f"{g_lon:.6f},{g_lat:.6f},{name}", "mode": "walk", "coordinate": "gaode", "callnative": "1",
            "src": SOURCE}
    baidu = {"destination": f"latlng:{lat:.6f},{lon:.6f}|name:{name}", "mode": "walking", "coord_type": "wgs84",
             "output": "html", "src": SOURCE}
    if origin is not None:
        o_lon, o_lat = wgs84_to_gcj02(*origin)
        amap["from"] = f"{o_lon:.6f},{o_lat:.6f},我的位置"
        baidu["origin"] = f"latlng:{origin[1]:.6f},{origin[0]:.6f}|name:我的位置"
    return {
        "amap": "https://uri.amap.com/navigation?" + urlencode(amap, quote_via=quote, safe=",:|"),
        "baidu": "https://api.map.baidu.com/direction?" + urlencode(baidu, quote_via=quote, safe=",:|"),
        "gcj02": [round(g_lon, 7), round(g_lat, 7)],
    }
