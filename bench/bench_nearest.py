"""Nearest points served: ``/api/v1/nearest`` under wrk, beside a trivial Flask JSON endpoint and the bare KNN query.

Everything runs in one go on the 100,000-point bench city (``geoservice_lead_big``, 29,078 streets, 3,113 grids):

- the served app exactly as ``geoservice serve`` runs it (gunicorn, 2 workers × 4 threads, access log on; through
  ``bench.common.serve``) and, started the same way in the same run, a trivial Flask app answering ``{"ok": true}``
  — the most any Flask view can do on this machine;
- wrk, 2 threads, 8 connections: req/s of the trivial endpoint and of ``/api/v1/nearest?lon&lat&k=5`` without a
  filter, with one kind, with two kinds and with a rare amenity (73 of 100,000 points have an umbrella). Each
  request asks at another of ``--spots`` random spots (a Lua script walks the list);
- one connection (wrk -t1 -c1): p50 of the same straight requests, and p50/p99 of ``mode=walk&k=3``;
- the bare KNN query through psycopg2 on the same spots (``ORDER BY geom::geography <-> spot LIMIT 5`` — what the
  index alone costs, with no exact ranking, grid or JSON).

Before timing, the served answers are checked against a brute force (``ORDER BY ST_Distance(geography)`` over all
rows) at a sample of the spots, for every filter timed.

Targets (issue 12): straight ≥ 30 % of the trivial endpoint's req/s at 8 connections, with or without a kind; one
connection p50 ≤ 10× the bare KNN; walking p50 ≤ 10 ms and p99 ≤ 30 ms.

Needs wrk (Debian: ``apt-get install -y wrk``). Run:
``.venv/bin/python -m bench.bench_nearest [--database geoservice_lead_big] [--seconds 10] [--spots 400]``.
The section goes to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

from bench.common import ROOT, bench_database, free_port, machine, serve, wait_until_answering, write_section, wrk

LOG_DIR = ROOT / "bench" / "out"
CHECKED_SPOTS = 25
# The straight requests timed: a label and the extra query parameters.
FILTERS = (
    ("no filter", ()),
    ("kind=toilet", (("kind", "toilet"),)),
    ("kind=kiosk&kind=rest_station", (("kind", "kiosk"), ("kind", "rest_station"))),
    ("amenity=umbrella (73 points)", (("amenity", "umbrella"),)),
)
TARGET_SHARE = 0.30
TARGET_KNN_RATIO = 10.0
TARGET_WALK_P50_MS = 10.0
TARGET_WALK_P99_MS = 30.0

BRUTE_FORCE = sa.text("""
    SELECT id FROM point
    WHERE status = 'open' AND (CAST(:kinds AS text[]) IS NULL OR kind = ANY(CAST(:kinds AS text[])))
      AND amenities @> CAST(:amenities AS text[])
    ORDER BY ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography), id
    LIMIT 5
""")
BARE_KNN = """
    SELECT id FROM point
    ORDER BY geom::geography <-> ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography
    LIMIT 5
"""


def trivial_app():
    """The reference: a Flask app with one JSON endpoint and nothing else (gunicorn app factory)."""
    from flask import Flask, jsonify

    app = Flask("trivial")

    @app.get("/ping")
    def ping():
        return jsonify({"ok": True})

    return app


def serve_trivial(port: int, log: Path) -> subprocess.Popen:
    """The trivial app under gunicorn with the options ``geoservice serve`` uses (geoservice.server)."""
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
               "--worker-class", "gthread", "--threads", "4", "--access-logfile", "-", "--error-logfile", "-",
               "bench.bench_nearest:trivial_app()"]
    proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
    return wait_until_answering(proc, port=port, path="/ping", log=log, wait_s=60)


def nearest_path(spot: tuple[float, float], extra: tuple = (), **params) -> str:
    return "/api/v1/nearest?" + urlencode([("lon", f"{spot[0]:.6f}"), ("lat", f"{spot[1]:.6f}"),
                                           *params.items(), *extra])


def check_answers(engine, port: int, spots: list[tuple[float, float]]) -> int:
    """The served straight answers against a brute force over every row; the number of answers compared."""
    compared = 0
    with engine.connect() as conn:
        for spot in spots[:CHECKED_SPOTS]:
            for _label, extra in FILTERS:
                # A new connection each time: the brute force takes longer than gunicorn keeps an idle one.
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", nearest_path(spot, extra, k=5))
                response = connection.getresponse()
                body = json.loads(response.read())
                connection.close()
                assert response.status == 200, body
                kinds = [v for k, v in extra if k == "kind"] or None
                amenities = [v for k, v in extra if k == "amenity"]
                expected = conn.execute(BRUTE_FORCE, {"lon": spot[0], "lat": spot[1], "kinds": kinds,
                                                      "amenities": amenities}).scalars().all()
                got = [f["id"] for f in body["features"]]
                assert got == expected, f"served {got}, brute force {expected} at {spot} with {extra}"
                compared += 1
    return compared


def bare_knn_ms(engine, spots: list[tuple[float, float]], *, rounds: int) -> float:
    """Median time of the bare KNN query through psycopg2 (one connection, autocommit)."""
    raw = engine.raw_connection()
    try:
        raw.driver_connection.autocommit = True
        cursor = raw.driver_connection.cursor()
        times = []
        for _ in range(rounds):
            for spot in spots:
                started = time.perf_counter()
                cursor.execute(BARE_KNN, spot)
                cursor.fetchall()
                times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times[len(spots):])  # the first round warms the cache
    finally:
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="geoservice_lead_big", help="an existing bench city database")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--spots", type=int, default=400, help="random spots the requests walk through")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/benchmarks.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("this bench needs wrk: apt-get install -y wrk (Debian package)")
    engine = bench_database(args.database)
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                  for t in ("point", "street", "grid")}
        minx, miny, maxx, maxy = conn.execute(sa.text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM street) t"
        )).one()
    rng = random.Random(12)
    spots = [(rng.uniform(minx, maxx), rng.uniform(miny, maxy)) for _ in range(args.spots)]
    load_before = os.getloadavg()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    app_port, trivial_port = free_port(), free_port()
    server = serve(engine, database=args.database, port=app_port, log=LOG_DIR / "bench_nearest_serve.log")
    trivial = serve_trivial(trivial_port, LOG_DIR / "bench_nearest_trivial.log")
    try:
        compared = check_answers(engine, app_port, spots)
        straight = {label: [nearest_path(s, extra, k=5) for s in spots] for label, extra in FILTERS}
        walk = [nearest_path(s, mode="walk", k=3) for s in spots]
        wrk(app_port, walk, connections=2, threads=2, seconds=3)  # warm the pools and caches of both workers
        wrk(trivial_port, ["/ping"], connections=2, threads=2, seconds=2)

        def run(port, paths, connections):
            return wrk(port, paths, connections=connections, threads=min(2, connections), seconds=args.seconds)

        many = {"trivial": run(trivial_port, ["/ping"], 8)}
        many.update({label: run(app_port, paths, 8) for label, paths in straight.items()})
        one = {"trivial": run(trivial_port, ["/ping"], 1)}
        one.update({label: run(app_port, paths, 1) for label, paths in straight.items()})
        one["walk"] = run(app_port, walk, 1)
        knn_ms = bare_knn_ms(engine, spots, rounds=4)
    finally:
        for proc in (server, trivial):
            proc.terminate()
            proc.wait(timeout=30)
    load_after = os.getloadavg()
    body = report(args, counts, many, one, knn_ms, compared=compared, load=(load_before, load_after))
    if not args.no_write:
        write_section("Nearest point (served)", body)
    print(body)


def report(args, counts: dict, many: dict, one: dict, knn_ms: float, *, compared: int, load: tuple) -> str:
    trivial = many["trivial"]["rps"]

    def met(ok: bool) -> str:
        return "met" if ok else "**missed**"

    rows = [f"| trivial Flask JSON endpoint | {trivial:,.0f} | 100 % | {one['trivial']['latency'][50]:.2f} ms | "
            "| |"]
    for label, _extra in FILTERS:
        share = many[label]["rps"] / trivial
        p50 = one[label]["latency"][50]
        rows.append(f"| `/api/v1/nearest?lon&lat&k=5` {label} | {many[label]['rps']:,.0f} | {share:.0%} "
                    f"({met(share >= TARGET_SHARE)}) | {p50:.2f} ms | {p50 / knn_ms:.1f}× "
                    f"({met(p50 <= TARGET_KNN_RATIO * knn_ms)}) | {many[label]['latency'][50]:.1f} ms |")
    walk = one["walk"]["latency"]
    bad = sum(r["bad"] for r in [*many.values(), *one.values()])
    return (
        f"Machine: {machine()}. Load average {load[0][0]:.2f} before, {load[1][0]:.2f} after (the machine was shared "
        "with other work: figures are side by side in one run, ratios matter more than absolutes).\n\n"
        f"City: `{args.database}`, {counts['point']:,} points, {counts['street']:,} street segments, "
        f"{counts['grid']:,} grids. gunicorn as `geoservice serve` runs it (2 workers × 4 threads); the trivial "
        "app (one `jsonify` view) served the same way in the same run. wrk, 2 threads, "
        f"{args.seconds} s per row; {args.spots} random spots, one per request in turn. The served answers equal "
        f"a brute force (ORDER BY ST_Distance(geography) over all rows) in all {compared} compared "
        f"({CHECKED_SPOTS} spots × {len(FILTERS)} filters); non-2xx answers during the runs: {bad}.\n\n"
        "| request | req/s, 8 connections | share of trivial (target ≥ 30 %) | p50, 1 connection "
        "| ÷ bare KNN (target ≤ 10×) | p50, 8 connections |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
        f"| bare KNN through psycopg2 (`ORDER BY geom::geography <-> spot LIMIT 5`) | | | {knn_ms:.2f} ms | 1× | |\n\n"
        f"Walking, `mode=walk&k=3`, one connection: p50 {walk[50]:.1f} ms "
        f"({met(walk[50] <= TARGET_WALK_P50_MS)}, target ≤ {TARGET_WALK_P50_MS:g} ms), p99 {walk[99]:.1f} ms "
        f"({met(walk[99] <= TARGET_WALK_P99_MS)}, target ≤ {TARGET_WALK_P99_MS:g} ms), "
        f"{one['walk']['rps']:,.0f} req/s.\n\n"
        f"Reproduce: `.venv/bin/python -m bench.bench_nearest --database {args.database} --seconds {args.seconds} "
        f"--spots {args.spots}`.\n"
    )


if __name__ == "__main__":
    main()
