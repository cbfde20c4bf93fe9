"""Repeat visits: whole-city answers computed afresh (baseline) against served from the results cache.

The city map and the planner ask for grid coverage, grid gaps and uncovered streets on every visit. Baseline: the
first request after a change to the data, which computes the answer. geoservice: the same request again while the
data version is unchanged, answered from ``geoservice.results_cache`` (reading the version, serialising). Both go
through the Flask test client on a city of the bench's own; the answers are checked equal.

Run: ``.venv/bin/python -m bench.bench_results_cache [--points 100000] [--blocks 120]``. Results go to
docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
import time

import sqlalchemy as sa

from bench.common import bench_engine, city_arguments, machine, write_section
from geoservice.app import create_app
from geoservice.config import load_settings

REQUESTS = (
    ("grid coverage, 500 m, all kinds", "/api/v1/coverage/grids"),
    ("grid gaps and overlaps", "/api/v1/coverage/grid-gaps"),
    ("uncovered streets, toilets, 300 m", "/api/v1/coverage/streets?radius=300&kind=toilet"),
)
TOUCH = sa.text("UPDATE squad SET phone = phone WHERE id = (SELECT min(id) FROM squad)")


def timed_get(client, url: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, url
    return elapsed, response.get_json()


def main() -> None:
    args = city_arguments(__doc__, points=100_000, blocks=120, repeat=3).parse_args()
    engine, counts = bench_engine(blocks=args.blocks, points=args.points)
    client = create_app(load_settings().replace(database_url=engine.url.render_as_string(hide_password=False))
                        ).test_client()
    rows = []
    for label, url in REQUESTS:
        fresh, kept = [], []
        for _ in range(args.repeat):
            with engine.begin() as conn:
                conn.execute(TOUCH)  # a change (that changes nothing) retires every kept answer
            ms, computed = timed_get(client, url)
            fresh.append(ms)
            ms, served = timed_get(client, url)
            kept.append(ms)
            assert served == computed, url
        rows.append(f"| {label} | {statistics.median(fresh):,.0f} ms | {statistics.median(kept):,.0f} ms | "
                    f"{statistics.median(fresh) / statistics.median(kept):,.0f}× |")
        print(rows[-1])
    body = (
        f"Machine: {machine()}.\n\n"
        f"City: {counts['street']:,} street segments, {counts['point']:,} points, {counts['grid']:,} grids "
        f"(generated, `scaled_spec(blocks={args.blocks}, points={args.points})`). Median of {args.repeat} rounds; "
        "each round first changes the data (a no-op UPDATE, which still moves the data version), then asks twice. "
        "The kept answer is identical to the computed one.\n\n"
        "| request | computed (baseline) | from the cache | ratio |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Reproduce: `.venv/bin/python -m bench.bench_results_cache --points {args.points} --blocks {args.blocks}`.\n"
    )
    write_section("Results cache (repeat visits)", body)
    print(body)


if __name__ == "__main__":
    main()
