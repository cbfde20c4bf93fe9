"""Planner slider: from a move of the radius slider to the map redrawn, in headless Chromium, on a big city.

The app is served as ``geoservice serve`` serves it (gunicorn, as the app role) on a generated city; the planner page
is opened in Debian's headless Chromium (Playwright). Each move sets the slider to a radius not asked before (so no
cached answer helps) and fires its ``input`` event, as a drag does; the page waits until the slider has rested
(``SLIDER_DEBOUNCE_MS``, included in the time), asks /api/v1/coverage/streets and /api/v1/coverage/grids, draws, and
marks the frame after drawing (``data-planner-drawn``). The time is taken in the page, from the event to that mark.
The first view (the page opened, the coverage engine loaded for the city's data version) is reported apart.

Run: ``.venv/bin/python -m bench.bench_planner_slider [--points 100000] [--blocks 120] [--repeat 12]``. Results go
to docs/benchmarks.md. Measured, not asserted.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime

from bench.common import ROOT, bench_engine, city_arguments, free_port, machine, serve, write_section
from geoservice.web.planner import SLIDER_DEBOUNCE_MS

DATABASE = "geoservice_bench_slider"
LOG = ROOT / "bench" / "out" / "bench_planner_slider.log"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
TIMEOUT_MS = 300_000
# Set the slider and fire its input event in one task; the page's own clock starts the measurement.
MOVE = """(radius) => {
    const range = document.getElementById("radius-range");
    range.value = String(radius);
    window.benchMovedAt = performance.now();
    range.dispatchEvent(new Event("input", { bubbles: true }));
}"""
DRAWN = """(radius) => {
    const q = new URLSearchParams(document.body.dataset.plannerDrawn || "");
    return q.get("radius") === String(radius);
}"""
# The panel (summary, table) and the charts of that radius done: what a planner reads before moving again.
SETTLED = """(radius) => {
    const body = document.body;
    const q = new URLSearchParams(body.dataset.plannerCharts || "");
    return body.dataset.plannerState === "ready" && q.get("radius") === String(radius);
}"""


def measure(base: str, radii: list[int]) -> tuple[float, list[tuple[int, float, float, float, int]]]:
    """The first view's time (s) and, per move: radius, ms from the move to the map drawn, of which ms asking (both
    answers received) and ms drawing, and the uncovered portions drawn."""
    from playwright.sync_api import sync_playwright

    moves = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        # bypass_csp: wait_for_function evaluates with eval, which the page's policy refuses.
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=True)
        page = context.new_page()
        started = time.perf_counter()
        page.goto(base + "/planner")
        page.wait_for_function(DRAWN, arg=500, timeout=TIMEOUT_MS)
        first_s = time.perf_counter() - started
        page.wait_for_function(SETTLED, arg=500, timeout=TIMEOUT_MS)
        for radius in radii:
            page.evaluate(MOVE, radius)
            page.wait_for_function(DRAWN, arg=radius, timeout=TIMEOUT_MS)
            ms, asking, drawing, features = page.evaluate(
                "[geoservicePlanner.drawnAt - window.benchMovedAt, geoservicePlanner.timing.answered -"
                " geoservicePlanner.timing.asked, geoservicePlanner.timing.drawn - geoservicePlanner.timing.answered,"
                " geoservicePlanner.counts.uncovered]")
            moves.append((radius, ms, asking, drawing, features))
            page.wait_for_function(SETTLED, arg=radius, timeout=TIMEOUT_MS)
        browser.close()
    return first_s, moves


def main() -> None:
    parser = city_arguments(__doc__, points=100_000, blocks=120, repeat=12)
    args = parser.parse_args()
    engine, counts = bench_engine(blocks=args.blocks, points=args.points, name=DATABASE)
    # New radii each time (none cached, the first view's 500 m left out), from the slider's 50 m up in its 50 m steps:
    # on a city this dense the small radii are where streets are left uncovered.
    radii = [r for r in range(50, 50 * (args.repeat + 2), 50) if r != 500][:args.repeat]
    port = free_port()
    proc = serve(engine, database=DATABASE, port=port, log=LOG, wait_s=120)
    try:
        first_s, moves = measure(f"http://127.0.0.1:{port}", radii)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    times = [ms for _, ms, _, _, _ in moves]
    rows = "\n".join(f"| {radius} m | {ms:.0f} ms | {asking:.0f} ms | {drawing:.0f} ms | {features:,} |"
                     for radius, ms, asking, drawing, features in moves)
    body = (
        f"Machine: {machine()}. Run {datetime.now().date().isoformat()}.\n\n"
        f"City: {counts['street']:,} street segments, {counts['point']:,} points (generated, "
        f"`scaled_spec(blocks={args.blocks}, points={args.points})`), all kinds, straight. `geoservice serve` "
        "(gunicorn, 2 workers, as the app role); the planner page in headless Chromium (Playwright), offline "
        "basemap. A move sets the slider to a radius not asked before and fires its input event; the time runs in "
        f"the page from the event to the frame after the map has drawn the new uncovered streets and grid colours (the "
        "panel's table and the charts follow; the next move waits for them), "
        f"including the {SLIDER_DEBOUNCE_MS} ms the page waits for the slider to rest.\n\n"
        f"First view (page opened, coverage engine loaded for this data version, map drawn): {first_s:.1f} s.\n\n"
        f"Slider move → map redrawn: **median {statistics.median(times):.0f} ms** over {len(times)} moves "
        f"(min {min(times):.0f}, max {max(times):.0f} ms).\n\n"
        "Asking: from the request to both answers (/coverage/streets and /coverage/grids, in parallel, over HTTP "
        "and parsed); drawing: from there to the frame after the map is drawn.\n\n"
        "| radius | move → map drawn | asking | drawing | uncovered portions drawn |\n|---|---|---|---|---|\n"
        + rows + "\n\n"
        f"Reproduce: `.venv/bin/python -m bench.bench_planner_slider --points {args.points} --blocks {args.blocks}`.\n"
    )
    write_section("Planner slider (move → map redrawn)", body)
    print(body)


if __name__ == "__main__":
    main()
