"""Bytes on the wire: the map pages' data requests with and without gzip, and what compressing costs.

Baseline: the plain answer (what the service sent before it compressed). geoservice: the same answer gzipped
(``geoservice.compression``) for a client that accepts it. Measured through the Flask test client on a city of
the bench's own, so the time is the app's (query + serialisation + gzip), not the network's; on a 1 Mbit/s
mobile link each 125 KB saved is a second.

Run: ``.venv/bin/python -m bench.bench_compression [--points 100000] [--blocks 120]``. Results go to
docs/benchmarks.md.
"""

from __future__ import annotations

import gzip

from bench.common import bench_engine, city_arguments, machine, median_ms, write_section
from geoservice.app import create_app
from geoservice.config import load_settings

VIEW = "bbox=113.80,34.00,113.85,34.05"  # a view of about 4.6 × 5.6 km near the centre of the generated city
REQUESTS = (
    ("grid outlines (city map, planner)", "/api/v1/layers/grids"),
    ("grid coverage (choropleth, table)", "/api/v1/coverage/grids?radius=500"),
    ("points of a view (city map)", f"/api/v1/layers/points?{VIEW}&limit=5000"),
    ("streets of a view (offline basemap)", f"/api/v1/layers/streets?{VIEW}&limit=20000"),
    ("Leaflet script", "/static/vendor/leaflet/leaflet.js"),
    ("city map page", "/"),
)


def main() -> None:
    parser = city_arguments(__doc__, points=100_000, blocks=120, repeat=5)
    args = parser.parse_args()
    engine, counts = bench_engine(blocks=args.blocks, points=args.points)
    app = create_app(load_settings().replace(database_url=engine.url.render_as_string(hide_password=False)))
    client = app.test_client()
    rows = []
    for label, url in REQUESTS:
        plain = client.get(url)
        packed = client.get(url, headers={"Accept-Encoding": "gzip"})
        assert plain.status_code == packed.status_code == 200, url
        assert packed.headers["Content-Encoding"] == "gzip", url
        if url != "/":  # the page names its map elements at random: compare the data only
            assert gzip.decompress(packed.data) == plain.data, url
        plain_ms = median_ms(lambda: client.get(url), repeat=args.repeat)  # noqa: B023
        packed_ms = median_ms(lambda: client.get(url, headers={"Accept-Encoding": "gzip"}),  # noqa: B023
                              repeat=args.repeat)
        rows.append(f"| {label} | {len(plain.data) / 1024:,.0f} KB | {len(packed.data) / 1024:,.0f} KB | "
                    f"{len(plain.data) / len(packed.data):.1f}× smaller | {plain_ms:.0f} ms | {packed_ms:.0f} ms |")
        print(rows[-1])
    body = (
        f"Machine: {machine()}.\n\n"
        f"City: {counts['street']:,} street segments, {counts['point']:,} points, {counts['grid']:,} grids "
        f"(generated, `scaled_spec(blocks={args.blocks}, points={args.points})`). Each request answered plain "
        f"(baseline) and gzipped, through the Flask test client; times are medians of {args.repeat} and include "
        "the query. Decompressed bodies are identical to the plain ones.\n\n"
        "| request | plain | gzip | size | plain time | gzip time |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n\n"
        f"Reproduce: `.venv/bin/python -m bench.bench_compression --points {args.points} --blocks {args.blocks}`.\n"
    )
    write_section("Response compression", body)
    print(body)


if __name__ == "__main__":
    main()
