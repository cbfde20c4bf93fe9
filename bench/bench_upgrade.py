"""Who waits while ``geoservice db upgrade`` runs against a serving app: the newest migration (0005) on a big city.

0005 builds two GiST indexes on ``point`` with ``CREATE INDEX CONCURRENTLY``, outside any transaction: PostgreSQL
holds SHARE UPDATE EXCLUSIVE on the table meanwhile, which lets readers and writers (an occupancy tap, an edit)
through; the build waits for the writes under way when it starts. Until that change, 0005 built them with a plain
``CREATE INDEX`` in the upgrade's one transaction, holding SHARE until the commit: every writer of ``point`` waited
(``BEFORE_CONCURRENTLY`` keeps that run's figures beside the new ones). This bench measures who waits, and how long,
on generated cities of 100,000 and 1,000,000 points (databases of its own, made once by ``bench.scale_city``):

1. the city's database is brought back to 0004 (the two indexes dropped);
2. ``geoservice serve`` (gunicorn, 2 workers × 4 threads, as the app role) serves it; two reader threads ask in turn
   nearest (plain and ``kind=toilet``), points/streets tiles at zoom 14, OGC items by bbox and /healthz; one writer
   thread makes an occupancy change every 100 ms (``UPDATE point SET occupancy = occupancy`` on an open kiosk, its
   own transaction: the statement a tap runs, without the HTTP around it);
3. after ``--settle`` seconds, ``geoservice.db.upgrade`` (what ``geoservice db upgrade`` calls) runs to the head on
   this process's connection (each migration in a transaction of its own), timed; the load goes on for
   ``--settle`` seconds more.

Reported per city: the upgrade's time, readers' and the writer's answers before / during / after (count, median and
max latency, failures), and the machine's load average at the start and at the end (2 cores, often shared).

Run: ``.venv/bin/python -m bench.bench_upgrade [--sizes 100000:120,1000000:160] [--settle 5]``. The section goes
to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import math
import random
import statistics
import threading
import time

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from bench.common import ROOT, free_port, machine, serve, write_section
from bench.scale_city import scale_city
from geoservice import db
from geoservice.config import load_settings

BEFORE = "0004"
# The same bench before 0005 built its indexes CONCURRENTLY (commit 1697869: plain CREATE INDEX in the upgrade's one
# transaction), for the comparison the section prints.
BEFORE_CONCURRENTLY = """\
| 100,000 | 29,078 | **10.0 s** | 1329, 6 / 450 ms, 0 failed | 3045, 5 / 43 ms, 0 failed | 1794, 5 / 94 ms, 0 failed | \
47, 5 / 48 ms, 0 failed | **2, 4917 / 5,038 ms, 1 failed** |
| 1,000,000 | 51,451 | **77.6 s** | 317, 11 / 3,943 ms, 0 failed | 6728, 11 / 234 ms, 0 failed | 881, 5 / 266 ms, \
0 failed | 45, 9 / 44 ms, 0 failed | **16, 5004 / 5,051 ms, 15 failed** |"""
BEFORE_CONCURRENTLY_LOAD = "6.20 / 5.06 / 2.81"  # load average (1/5/15 min) at the end of that run
LOG_DIR = ROOT / "bench" / "out"


def downgrade(engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def reader_paths(conn, *, count: int = 40, seed: int = 5) -> list[str]:
    lo_lon, lo_lat, hi_lon, hi_lat = conn.execute(sa.text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM point) x")).one()
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        lon, lat = rng.uniform(lo_lon, hi_lon), rng.uniform(lo_lat, hi_lat)
        n = 2 ** 14
        x = int((lon + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
        paths += [f"/api/v1/nearest?lon={lon:.6f}&lat={lat:.6f}&k=5",
                  f"/api/v1/nearest?lon={lon:.6f}&lat={lat:.6f}&k=5&kind=toilet",
                  f"/tiles/points/14/{x}/{y}.mvt", f"/tiles/streets/14/{x}/{y}.mvt",
                  f"/ogc/collections/points/items?bbox={lon - 0.01:.5f},{lat - 0.008:.5f},{lon + 0.01:.5f},"
                  f"{lat + 0.008:.5f}&limit=10&f=json", "/healthz"]
    return paths


class Recorder:
    """Threads that record (started, ended, ok) per request until stopped."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.reads: list[tuple[float, float, bool]] = []
        self.writes: list[tuple[float, float, bool]] = []
        self.threads: list[threading.Thread] = []

    def reader(self, port: int, paths: list[str], offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        i = offset
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                connection.request("GET", paths[i % len(paths)])
                response = connection.getresponse()
                response.read()
                ok = 200 <= response.status < 300
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                ok = False
            self.reads.append((started, time.monotonic(), ok))
            i += 2

    def writer(self, engine, point_id: int, timeout_ms: int) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                with engine.begin() as conn:
                    # The tap's own limit: the app runs it under the lookup budget (geoservice.budget).
                    conn.execute(sa.text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(timeout_ms)})
                    conn.execute(sa.text("UPDATE point SET occupancy = occupancy WHERE id = :id"), {"id": point_id})
                ok = True
            except sa.exc.DBAPIError:
                ok = False
            self.writes.append((started, time.monotonic(), ok))
            time.sleep(0.1)

    def start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " / ".join(f.read().split()[:3])


def summary(rows: list[tuple[float, float, bool]]) -> str:
    if not rows:
        return "none"
    times = [(end - start) * 1000 for start, end, _ in rows]
    failed = sum(1 for *_, ok in rows if not ok)
    return f"{len(rows)}, {statistics.median(times):.0f} / {max(times):,.0f} ms, {failed} failed"


def run_city(points: int, blocks: int, settle_s: float) -> dict:
    name = f"geoservice_upgrade_{points // 1000}k"
    engine = scale_city(name=name, points=points, blocks=blocks)
    downgrade(engine, BEFORE)
    with engine.connect() as conn:
        paths = reader_paths(conn)
        kiosk = conn.execute(sa.text("SELECT min(id) FROM point WHERE kind = 'kiosk' AND status = 'open'")).scalar_one()
        counts = conn.execute(sa.text("SELECT (SELECT count(*) FROM point), (SELECT count(*) FROM street)")).one()
    port = free_port()
    server = serve(engine, database=name, port=port, log=LOG_DIR / f"upgrade-{name}.log")
    recorder = Recorder()
    try:
        for offset in range(2):
            recorder.start(recorder.reader, port, paths, offset)
        recorder.start(recorder.writer, engine, kiosk, int(load_settings().timeout_lookup_s * 1000))
        time.sleep(settle_s)
        started = time.monotonic()
        with engine.connect() as conn:
            db.upgrade(conn)
        ended = time.monotonic()
        time.sleep(settle_s)
    finally:
        recorder.stop()
        server.terminate()
        server.wait(timeout=60)
    with engine.connect() as conn:
        assert db.current_revision(conn) == db.head_revision()
    engine.dispose()

    def phase(rows, which):
        if which == "before":
            return [r for r in rows if r[1] <= started]
        if which == "during":
            return [r for r in rows if r[0] < ended and r[1] > started]
        return [r for r in rows if r[0] >= ended]

    return {"points": counts[0], "streets": counts[1], "upgrade_s": ended - started,
            **{f"reads_{p}": summary(phase(recorder.reads, p)) for p in ("before", "during", "after")},
            **{f"writes_{p}": summary(phase(recorder.writes, p)) for p in ("before", "during", "after")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000:120,1000000:160", help="POINTS:BLOCKS,… (generated cities)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of load before and after the upgrade")
    args = parser.parse_args()
    load_at_start = load_average()
    rows = []
    for size in args.sizes.split(","):
        points, blocks = (int(v) for v in size.split(":"))
        result = run_city(points, blocks, args.settle)
        print(result)
        rows.append(result)
    load = load_average()
    table = "\n".join(
        f"| {r['points']:,} | {r['streets']:,} | **{r['upgrade_s']:.1f} s** | {r['reads_before']} | "
        f"{r['reads_during']} | {r['reads_after']} | {r['writes_before']} | **{r['writes_during']}** |" for r in rows)
    write_section("Upgrading while serving: who waits for migration 0005 (bench_upgrade)", f"""Machine: {machine()}. \
Load average (1/5/15 min) at the start: {load_at_start}; at the end: {load}.

`geoservice.db.upgrade` from 0004 to the head (0005: `point_kind_geom_idx`, `point_hours_geom_idx`, built with \
`CREATE INDEX CONCURRENTLY`, each migration in its own transaction) on a generated city while `geoservice serve` \
(2 workers × 4 threads) answers two reader threads (nearest plain and by kind, points/streets tiles at z14, OGC \
items by bbox, /healthz, in turn) and one writer makes an occupancy change every 100 ms (the tap's UPDATE, in its \
own transaction, under the tap's statement timeout, {load_settings().timeout_lookup_s:g} s: a tap that waits \
longer is answered 503). {args.settle:.0f} s of load before and after. Answers: count, median / max latency, failures.

| points | streets | upgrade | reads before | reads during | reads after | writes before | writes during |
|---|---|---|---|---|---|---|---|
{table}

Before, with a plain `CREATE INDEX` in the upgrade's one transaction (commit 1697869; load average at the end \
{BEFORE_CONCURRENTLY_LOAD}):

| points | streets | upgrade (SHARE on `point` held) | reads before | reads during | reads after | writes before | \
writes during |
|---|---|---|---|---|---|---|---|
{BEFORE_CONCURRENTLY}

Readers never wait (their latency during the upgrade is the CPU the index builds take from them on 2 cores). With \
the plain build every writer of `point` waited until the upgrade committed, and failed once its statement timeout \
was past; the concurrent build lets them through (it waits for the writes under way when it starts, not they for \
it). It does more work (two passes over the table); on this shared 2-core machine the upgrade's time varies from \
run to run with whatever else runs, by more than the two kinds of build differ (docs/upgrading.md lists the runs).

Reproduce: `.venv/bin/python -m bench.bench_upgrade --sizes {args.sizes} --settle {args.settle:g}`.
""")


if __name__ == "__main__":
    main()
