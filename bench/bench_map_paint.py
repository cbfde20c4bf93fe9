"""bench_map_paint: the city map (/) on vector tiles in headless Chromium — page HTML bytes, first paint of points
and grids, a pan to a new view drawn, tiles and bytes per view — on the 100,000- and the 1,000,000-point city.

The app is served as ``geoservice serve`` serves it (gunicorn, 2 workers, bench.common.serve) on each bench city;
the browser is Debian's Chromium with the test suite's flags (WebGL2 through SwiftShader: MapLibre renders on the
CPU here, as on a phone without a GPU it would not), a 1280×800 window.

"Drawn" is the page's own ``geoservice:drawn`` event (static/js/citymap.js, the condition the page tests wait for):
the points tiles of the view are in with their markers and clusters on the map (close up, with the points' records
for their popups), the close-up grid outlines (from zoom 16) are in, and MapLibre is idle — its street, grid and
district tiles loaded and rendered. The grids' coverage fill is not waited for (it is joined later, by design).

- First paint: from navigation start to the first ``geoservice:drawn``, in a new browser context each time (empty
  cache: the page's scripts, MapLibre's 1 MB and its worker are fetched too), at the start view (zoom 13 on the
  city centre) and close up (zoom 18: every point a marker of its own). ``points`` and ``vector`` say when each
  half was in (performance marks set by the page).
- Pan: ``map.panBy`` one whole view (every tile new), to the next ``geoservice:drawn``; in the page of the last
  first paint, repeated in a spiral round the start (east, south, west, west, north, …) so that each pan shows
  ground not seen before and stays in the city.
- Tiles and bytes per view: the /tiles requests of that view (all of them go through the page: MapLibre's tile
  requests come back to it, see citymap.js) and their bytes on the wire (gzip, headers included).

One unmeasured warm-up load per city first (the first point tile after a change of the data makes the city's cell
counts once). Medians of ``--repeat`` runs; the machine is shared, so its load average is reported with the figures.

    .venv/bin/python bench/bench_map_paint.py [--repeat 5] [--cities geoservice_lead_big,geoservice_city_1m]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_database, free_port, machine, serve, write_section  # noqa: E402
from geoservice.config import load_settings  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 800}
TARGETS = {"html_kb": 300, "first_paint_ms": 1500, "pan_ms": 500}
CITIES = {"geoservice_lead_big": "100,000 points (120×120 blocks)",
          "geoservice_city_1m": "1,000,000 points (160×160 blocks)"}
# Marker icons are resources too: the default buffer of 250 entries would drop a close-up view's tiles.
RECORD_DRAWN = ("performance.setResourceTimingBufferSize(1000000); window.__drawn = []; "
                "document.addEventListener('geoservice:drawn', () => window.__drawn.push(performance.now()));")
TILES_SINCE_JS = """(since) => performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/tiles/') && e.startTime >= since)
  .map(e => [new URL(e.name).pathname.split('/')[2], e.transferSize])"""
WAIT_DRAWN_JS = """() => new Promise(resolve => { if (window.__drawn.length) { resolve(); return; }
  document.addEventListener('geoservice:drawn', () => resolve(), {once: true}); })"""
MARKS_JS = """() => { const out = {}; performance.getEntriesByType('mark').forEach(m => {
  const [, what, move] = m.name.split(':'); if (move === '1') out[what] = m.startTime; }); return out; }"""
PAN_JS = """([dx, dy]) => new Promise(resolve => {
  const start = performance.now();
  document.addEventListener('geoservice:drawn', () => resolve([start, performance.now() - start]), {once: true});
  window.geoservice.city.map.panBy([dx * window.innerWidth, dy * window.innerHeight], {animate: false});
})"""
# A spiral of whole views round the start: every pan goes to ground not yet seen, and stays near the centre.
SPIRAL = [(1, 0), (0, 1), (-1, 0), (-1, 0), (0, -1), (0, -1), (1, 0), (1, 0), (1, 0), (0, 1)]


def per_view(entries: list) -> dict:
    """Tiles and bytes on the wire of one view, in all and per layer."""
    layers: dict[str, list[int]] = {}
    for layer, size in entries:
        layers.setdefault(layer, []).append(size)
    return {"tiles": len(entries), "bytes": sum(size for _, size in entries),
            "layers": {name: (len(sizes), sum(sizes)) for name, sizes in sorted(layers.items())}}


def first_paint(browser, url: str) -> tuple[float, dict, dict, object, object]:
    """One cold load of ``url``: (ms to the first drawn view, marks, tiles of that view, context, page)."""
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(RECORD_DRAWN)
    page.goto(url)
    # With the page's Content-Security-Policy in force (no eval: wait_for_function's polling would need it).
    page.evaluate(WAIT_DRAWN_JS)
    if errors:
        raise RuntimeError(f"the page failed: {errors}")
    drawn = page.evaluate("window.__drawn[0]")
    return drawn, page.evaluate(MARKS_JS), per_view(page.evaluate(TILES_SINCE_JS, 0)), context, page


def pans(page, repeat: int) -> tuple[list[float], list[dict]]:
    times, views = [], []
    for step in range(repeat):
        start, ms = page.evaluate(PAN_JS, list(SPIRAL[step % len(SPIRAL)]))
        times.append(ms)
        views.append(per_view(page.evaluate(TILES_SINCE_JS, start)))
    return times, views


def median_view(views: list[dict]) -> dict:
    return {"tiles": statistics.median(v["tiles"] for v in views),
            "bytes": statistics.median(v["bytes"] for v in views), "layers": views[len(views) // 2]["layers"]}


def bench_city(browser, base: str, *, repeat: int, centre: tuple[float, float]) -> dict:
    with urllib.request.urlopen(base + "/") as response:
        html = response.read()
    lon, lat = centre
    views = {"start (z13)": base + "/", "close (z18)": f"{base}/#18/{lat:.5f}/{lon:.5f}"}
    first_paint(browser, base + "/")[3].close()  # warm-up, not measured
    results = {"html_bytes": len(html), "views": {}}
    for name, url in views.items():
        runs = []
        for run in range(repeat):
            ms, marks, view, context, page = first_paint(browser, url)
            runs.append((ms, marks, view))
            if run < repeat - 1:  # the last page goes on to the pans
                context.close()
        pan_ms, pan_views = pans(page, repeat)
        context.close()
        results["views"][name] = {
            "first_ms": statistics.median(r[0] for r in runs),
            "points_ms": statistics.median(r[1].get("points", float("nan")) for r in runs),
            "vector_ms": statistics.median(r[1].get("vector", float("nan")) for r in runs),
            "first_view": median_view([r[2] for r in runs]),
            "pan_ms": statistics.median(pan_ms), "pan_view": median_view(pan_views),
            "first_all": [round(r[0]) for r in runs], "pan_all": [round(t) for t in pan_ms],
        }
    return results


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "missed"


def report(results: dict, *, repeat: int, load_start, load_end) -> str:
    lines = [
        f"Machine: {machine()}; load average (1/5/15 min) {load_start} at the start, {load_end} at the end (the "
        "machine was shared with other benches and test runs). Chromium "
        "headless with the test suite's flags (MapLibre on SwiftShader: WebGL2 on the CPU), 1280×800; gunicorn "
        f"with 2 workers; medians of {repeat} (first paints each in a new browser context: nothing cached).",
        "",
        "First paint: navigation start → the page's first `geoservice:drawn` (points tiles in with their markers, "
        "MapLibre idle with its street/grid/district tiles drawn; the coverage fill is joined afterwards and not "
        "waited for); `points`/`vector`: when each half was in. Pan: one whole view (all tiles new; a spiral "
        "round the start) → the next `geoservice:drawn`. Tiles and bytes: the view's /tiles requests, bytes on the "
        "wire (gzip, headers included).",
        "",
        f"Targets: HTML ≤ {TARGETS['html_kb']} KB, first paint ≤ {TARGETS['first_paint_ms']} ms, pan ≤ "
        f"{TARGETS['pan_ms']} ms.",
        "",
        "| city | HTML | view | first paint ms (points / vector) | tiles, KB first view | pan ms | tiles, KB per pan "
        "| runs (first; pan) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for city, r in results.items():
        html_kb = r["html_bytes"] / 1000
        for name, v in r["views"].items():
            fv, pv = v["first_view"], v["pan_view"]
            lines.append(
                f"| {CITIES.get(city, city)} | {html_kb:.1f} KB ({verdict(html_kb, TARGETS['html_kb'])}) | {name} | "
                f"**{v['first_ms']:.0f}** ({v['points_ms']:.0f} / {v['vector_ms']:.0f}; "
                f"{verdict(v['first_ms'], TARGETS['first_paint_ms'])}) | {fv['tiles']:.0f}, "
                f"{fv['bytes'] / 1000:.0f} | **{v['pan_ms']:.0f}** ({verdict(v['pan_ms'], TARGETS['pan_ms'])}) | "
                f"{pv['tiles']:.0f}, {pv['bytes'] / 1000:.0f} | {v['first_all']}; {v['pan_all']} |")
    lines += ["", "Tiles per layer (count, bytes) of a first view and of a pan:", ""]
    for city, r in results.items():
        for name, v in r["views"].items():
            first = ", ".join(f"{k} {n}/{b / 1000:.0f} KB" for k, (n, b) in v["first_view"]["layers"].items())
            pan = ", ".join(f"{k} {n}/{b / 1000:.0f} KB" for k, (n, b) in v["pan_view"]["layers"].items())
            lines.append(f"- {CITIES.get(city, city)}, {name}: first view {first}; pan {pan}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure; the median is reported")
    parser.add_argument("--cities", default=",".join(CITIES), help="bench databases (existing, already loaded)")
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write docs/benchmarks.md")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    centre = load_settings().city_center
    load_start = tuple(round(x, 2) for x in os.getloadavg())
    results = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            for city in args.cities.split(","):
                engine = bench_database(city)
                server = serve(engine, database=city, port=(port := free_port()),
                               log=ROOT / "bench" / "out" / f"bench_map_paint_{city}.log")
                try:
                    results[city] = bench_city(browser, f"http://127.0.0.1:{port}", repeat=args.repeat,
                                               centre=centre)
                finally:
                    server.terminate()
                    server.wait(timeout=30)
                    engine.dispose()
        finally:
            browser.close()
    load_end = tuple(round(x, 2) for x in os.getloadavg())
    body = report(results, repeat=args.repeat, load_start=load_start, load_end=load_end)
    print(body)
    if not args.no_write:
        write_section("City map on vector tiles: first paint and pan in Chromium (bench_map_paint)", body)


if __name__ == "__main__":
    main()
