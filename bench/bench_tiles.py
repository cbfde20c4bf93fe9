"""Vector tiles per map view against the GeoJSON layer for the same view, zooms 11-17, on the bench cities.

The served app (``geoservice serve``: gunicorn, 2 workers, as the app role) on the existing bench cities
(``geoservice_lead_big``: 100,000 points; ``geoservice_city_1m``: 1,000,000 points, when it is there). A view is a
1280 × 800 px desktop map (256-px tiles) at zoom z, centred on the city centre and on two spots 3 km to its west and
north-east. For each view:

- the tiles of ``points``, ``streets`` and ``grids`` covering it are fetched as a browser does — gzip accepted, six
  connections — and we report tiles and bytes on the wire per view, the median milliseconds per tile (each tile's
  request, timed on its own) and the view's wall time;
- the baseline: ``/api/v1/layers/points?bbox=<the view>`` (GeoJSON, gzip), its bytes and milliseconds (median of
  ``--repeat``, once when it takes over 5 s); ``truncated`` says when the view held more than its 100,000-feature
  limit, a 503 when it ran past the layer time limit (its time is then a lower bound);
- a tile the browser already holds: the median of a revalidation (``If-None-Match`` → 304).

Before timing, the point cells each worker keeps (``geoservice.tiles.PointCells``) are made by a first round of
low-zoom tiles; the whole-city pass that makes them is timed on its own (what the first low-zoom tile after a change
of the data costs, once per worker).

Run: ``.venv/bin/python -m bench.bench_tiles [--cities geoservice_lead_big,geoservice_city_1m] [--repeat 3]``.
Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from bench.common import ROOT, bench_database, free_port, machine, serve, write_section
from geoservice import tiles

CITIES = ("geoservice_lead_big", "geoservice_city_1m")
ZOOMS = range(11, 18)
LAYERS = ("points", "streets", "grids")
WIDTH, HEIGHT = 1280, 800
CONNECTIONS = 6  # what a browser opens to one host
CENTRE = (113.826, 34.026)
OFFSETS_M = ((0, 0), (-3000, 0), (2100, 2100))
LOG = ROOT / "tests" / "artifacts" / "bench_tiles_serve.log"
SLOW_MS = 5000  # a GeoJSON answer slower than this is asked once per view, not --repeat times


def pixel(lon: float, lat: float, z: int) -> tuple[float, float]:
    """World pixel (256-px tiles) of a position at zoom z."""
    n = 256 * 2**z
    return (lon + 180) / 360 * n, (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n


def lonlat(px: float, py: float, z: int) -> tuple[float, float]:
    n = 256 * 2**z
    return px / n * 360 - 180, math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * py / n))))


def view(lon: float, lat: float, z: int) -> tuple[list[tuple[int, int]], str]:
    """The tiles covering a WIDTH × HEIGHT view centred on (lon, lat) at z, and the view's bbox parameter."""
    cx, cy = pixel(lon, lat, z)
    x0, y0, x1, y1 = cx - WIDTH / 2, cy - HEIGHT / 2, cx + WIDTH / 2, cy + HEIGHT / 2
    tiles_ = [(tx, ty) for tx in range(int(x0 // 256), int(x1 // 256) + 1)
              for ty in range(int(y0 // 256), int(y1 // 256) + 1)]
    west, north = lonlat(x0, y0, z)
    east, south = lonlat(x1, y1, z)
    return tiles_, f"{west:.6f},{south:.6f},{east:.6f},{north:.6f}"


def spot(dx_m: float, dy_m: float) -> tuple[float, float]:
    lon, lat = CENTRE
    return lon + dx_m / (111_320 * math.cos(math.radians(lat))), lat + dy_m / 110_574


class Client:
    """One keep-alive HTTP connection per thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def get(self, path: str, headers: dict | None = None, *, fail: bool = True) -> tuple[int, bytes, float, dict]:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        started = time.perf_counter()
        try:
            connection.request("GET", path, headers={"Accept-Encoding": "gzip", **(headers or {})})
            response = connection.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # gunicorn closes a keep-alive connection idle for 2 s; a browser opens a new one, and so do we.
            connection.close()
            connection = self.local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            started = time.perf_counter()
            connection.request("GET", path, headers={"Accept-Encoding": "gzip", **(headers or {})})
            response = connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status >= 400 and fail:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
        return response.status, body, elapsed, dict(response.getheaders())


def cells_pass(engine) -> tuple[float, int]:
    """Seconds of the whole-city pass that makes the kept point cells, and how many groups it keeps."""
    with engine.connect() as conn:
        started = time.perf_counter()
        cells = tiles.PointCells.read(conn)
        seconds = time.perf_counter() - started
        conn.rollback()
    return seconds, 0 if cells is None else len(cells.n)


def measure_city(name: str, *, repeat: int, zooms=ZOOMS) -> dict:
    engine = bench_database(name)
    with engine.connect() as conn:
        points = conn.execute(sa.text("SELECT count(*) FROM point")).scalar_one()
    pass_s, groups = cells_pass(engine)
    port = free_port()
    proc = serve(engine, database=name, port=port, log=LOG)
    client = Client(port)
    try:
        cold_ms = client.get("/tiles/points/11/{}/{}.mvt".format(*[int(c // 256) for c in pixel(*CENTRE, 11)]))[2]
        with ThreadPoolExecutor(CONNECTIONS) as pool:  # every worker makes its cells before anything is timed
            z11, _ = view(*CENTRE, 11)
            list(pool.map(lambda t: client.get(f"/tiles/points/11/{t[0]}/{t[1]}.mvt"), z11 * 2))
            rows = [measure_zoom(client, pool, z, repeat=repeat) for z in zooms]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"name": name, "points": points, "pass_s": pass_s, "groups": groups, "cold_ms": cold_ms, "rows": rows}


def measure_zoom(client: Client, pool: ThreadPoolExecutor, z: int, *, repeat: int) -> dict:
    tile_ms, revalidate_ms, view_ms, view_bytes, view_tiles = [], [], [], [], []
    per_layer: dict[str, list[float]] = {layer: [] for layer in LAYERS}
    geojson_ms, geojson_bytes, truncated, features, timed_out = [], [], False, 0, False
    for dx, dy in OFFSETS_M:
        covering, bbox = view(*spot(dx, dy), z)
        paths = [f"/tiles/{layer}/{z}/{x}/{y}.mvt" for layer in LAYERS for x, y in covering]
        started = time.perf_counter()
        answers = list(pool.map(client.get, paths))
        view_ms.append((time.perf_counter() - started) * 1000)
        view_tiles.append(len(paths))
        view_bytes.append(sum(len(body) for _, body, _, _ in answers))
        tile_ms.extend(ms for _, _, ms, _ in answers)
        for path, (_, _, ms, _) in zip(paths, answers, strict=True):
            per_layer[path.split("/")[2]].append(ms)
        for path, (_, _, _, headers) in list(zip(paths, answers, strict=True))[::7]:
            revalidate_ms.append(client.get(path, {"If-None-Match": headers["ETag"]})[2])
        for _ in range(repeat):
            status, body, ms, headers = client.get(f"/api/v1/layers/points?bbox={bbox}", fail=False)
            geojson_ms.append(ms)
            if status != 200:
                timed_out = True
            if ms > SLOW_MS or status != 200:
                break  # one more of those says nothing new and costs the machine another half minute
        if status != 200:
            continue
        geojson_bytes.append(len(body))
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        doc = json.loads(body)
        truncated |= doc.get("truncated", False)
        features = max(features, len(doc["features"]))
    return {"z": z, "tiles": statistics.median(view_tiles), "bytes": statistics.median(view_bytes),
            "tile_ms": statistics.median(tile_ms), "tile_p90_ms": statistics.quantiles(tile_ms, n=10)[-1],
            "layer_ms": {layer: statistics.median(times) for layer, times in per_layer.items()},
            "view_ms": statistics.median(view_ms), "revalidate_ms": statistics.median(revalidate_ms),
            "geojson_ms": statistics.median(geojson_ms),
            "geojson_bytes": statistics.median(geojson_bytes) if geojson_bytes else None,
            "truncated": truncated, "features": features, "timed_out": timed_out}


def _kb(n: float) -> str:
    return f"{n / 1024:,.0f} KB" if n < 10 * 1024 * 1024 else f"{n / 1024 / 1024:,.1f} MB"


def report(results: list[dict], *, load: str) -> str:
    lines = [
        "",
        f"Machine: {machine()}. Load while running: {load}.",
        "",
        "Command: `.venv/bin/python -m bench.bench_tiles` (gunicorn, 2 workers, as `geoservice serve` runs it). A view "
        f"is {WIDTH}×{HEIGHT} px of 256-px tiles at the zoom, three spots (the centre, 3 km west, 3 km north-east); "
        f"its tiles of {', '.join(LAYERS)} fetched over {CONNECTIONS} keep-alive connections with gzip, as a browser "
        "does. Bytes are on the wire (gzip). Baseline: `/api/v1/layers/points?bbox=<the view>` (GeoJSON, gzip) — "
        "points only, so the tiles carry streets and grids on top of what the baseline carries.",
        "",
    ]
    for city in results:
        lines += [
            f"### {city['name']} ({city['points']:,} points)",
            "",
            f"Kept point cells (zooms ≤ {tiles.CELLS_MAX_ZOOM}): one whole-city pass of {city['pass_s']:.2f} s "
            f"keeping {city['groups']:,} (cell, kind) groups — paid by the first low-zoom point tile after a change "
            f"of the data, once per worker (the first tile after start took {city['cold_ms']:,.0f} ms).",
            "",
            "| zoom | tiles / view | bytes / view | ms / tile (median, p90) | median points / streets / grids "
            "| view wall time | 304 revalidation | GeoJSON points: ms | bytes | features "
            "| GeoJSON ÷ tiles: time, bytes |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in city["rows"]:
            more = " (truncated at the limit)" if r["truncated"] else ""
            more += " — some views stopped by the 20 s layer time limit (503)" if r["timed_out"] else ""
            geojson_bytes = _kb(r["geojson_bytes"]) if r["geojson_bytes"] is not None else "–"
            lines.append(
                f"| {r['z']} | {r['tiles']:.0f} | {_kb(r['bytes'])} | {r['tile_ms']:.1f} ({r['tile_p90_ms']:.1f}) | "
                f"{' / '.join(f'{ms:.1f}' for ms in r['layer_ms'].values())} | "
                f"{r['view_ms']:,.0f} ms | {r['revalidate_ms']:.1f} ms | {r['geojson_ms']:,.0f} | "
                f"{geojson_bytes} | {r['features']:,}{more} | {r['geojson_ms'] / r['view_ms']:.1f}×, "
                f"{(r['geojson_bytes'] or 0) / r['bytes']:.1f}× |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", default=",".join(CITIES), help="bench databases, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="timed GeoJSON requests per view; the median is reported")
    parser.add_argument("--zooms", default="11-17", help="zooms to measure, first-last")
    args = parser.parse_args()
    first, _, last = args.zooms.partition("-")
    zooms = range(int(first), int(last or first) + 1)
    load_before = open("/proc/loadavg").read().split()[:3]
    results = []
    for name in args.cities.split(","):
        result = measure_city(name, repeat=args.repeat, zooms=zooms)
        print(json.dumps(result, indent=1, default=str))
        results.append(result)
    load_after = open("/proc/loadavg").read().split()[:3]
    body = report(results, load=f"load average {' / '.join(load_before)} before, {' / '.join(load_after)} after "
                              "(1/5/15 min, 2 cores; other benches and test suites were running)")
    print(body)
    write_section("Vector tiles per view against GeoJSON (bench_tiles)", body)


if __name__ == "__main__":
    main()
