"""One app process against two behind Caddy, on one machine: what adding app processes buys when the cores are few.

On the 100,000-point bench city (a database of its own, made once by ``bench.scale_city``), nearest (``k=5`` at
``--spots`` random spots in turn) and /healthz under wrk (2 threads, 8 connections, ``--seconds`` each), through:

- one ``geoservice serve`` process (gunicorn, 2 workers × 4 threads) asked directly — the reference;
- Caddy from ``deploy/Caddyfile`` (``tests/proxy.py``, https with its internal CA) in front of that one process;
- the same Caddy in front of two such processes (4 workers in all).

The machine's cores are shared by wrk, Caddy, gunicorn and PostgreSQL: the figures say what a second process buys
*on the same cores*, not on a second machine. Run:
``.venv/bin/python -m bench.bench_scale_out [--seconds 10] [--spots 200] [--rounds 2]``; the section goes to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa

from bench.common import ROOT, free_port, machine, serve, write_section, wrk
from bench.scale_city import scale_city
from tests.proxy import start_proxy

NAME, POINTS, BLOCKS = "geoservice_upgrade_100k", 100_000, 120
LOG_DIR = ROOT / "bench" / "out"


def spots(engine, count: int) -> list[str]:
    with engine.connect() as conn:
        lo_lon, lo_lat, hi_lon, hi_lat = conn.execute(sa.text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM point) x")).one()
    rng = random.Random(11)
    return [f"/api/v1/nearest?lon={rng.uniform(lo_lon, hi_lon):.6f}&lat={rng.uniform(lo_lat, hi_lat):.6f}&k=5"
            for _ in range(count)]


def wrk_url(url: str, paths: list[str], seconds: int) -> float:
    """req/s of wrk (2 threads, 8 connections) against ``url`` (https allowed), ``paths`` in turn."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("local paths = {" + ",".join(f'"{p}"' for p in paths) + "}\nlocal i = 0\n"
                     "request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n")
    try:
        out = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds}s", "--timeout", "60s", "-s", script.name, url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    bad = [line for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line]
    if bad:
        raise RuntimeError(f"wrk against {url}: {bad}")
    return float(out.split("Requests/sec:")[1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--spots", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    engine = scale_city(name=NAME, points=POINTS, blocks=BLOCKS)
    nearest = spots(engine, args.spots)
    ports = [free_port(), free_port()]
    servers = [serve(engine, database=NAME, port=p, log=LOG_DIR / f"scale-out-{p}.log") for p in ports]
    results: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            one = start_proxy([f"127.0.0.1:{ports[0]}"], https_port=free_port(), http_port=free_port(),
                              folder=Path(tmp) / "one")
            two = start_proxy([f"127.0.0.1:{p}" for p in ports], https_port=free_port(), http_port=free_port(),
                              folder=Path(tmp) / "two")
            try:
                for _ in range(args.rounds):
                    for label, paths in (("nearest k=5", nearest), ("/healthz", ["/healthz"])):
                        direct = wrk(ports[0], paths, seconds=args.seconds)
                        if direct["bad"] or direct["socket_errors"]:
                            raise RuntimeError(f"direct: {direct}")
                        results.setdefault(f"{label}|1 process, direct", []).append(direct["rps"])
                        results.setdefault(f"{label}|Caddy → 1 process", []).append(
                            wrk_url(one.url, paths, args.seconds))
                        results.setdefault(f"{label}|Caddy → 2 processes", []).append(
                            wrk_url(two.url, paths, args.seconds))
            finally:
                one.stop()
                two.stop()
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=60)
    with open("/proc/loadavg") as f:
        load = " / ".join(f.read().split()[:3])
    lines = []
    for key, values in results.items():
        label, setup = key.split("|")
        lines.append(f"| {label} | {setup} | **{statistics.median(values):,.0f}** "
                     f"({', '.join(f'{v:,.0f}' for v in values)}) |")
        print(lines[-1])
    write_section("One app process or two, on one 2-core machine (bench_scale_out)", f"""Machine: {machine()}. \
Load average (1/5/15 min) at the end: {load}.

City: `{NAME}` ({POINTS:,} points, `scaled_spec(blocks={BLOCKS})`). `geoservice serve` processes (gunicorn, 2 workers \
× 4 threads each, as the app role); Caddy from `deploy/Caddyfile` (https, internal CA) in front of one or of two; \
wrk 2 threads, 8 connections, {args.seconds} s per cell, {args.rounds} rounds (each cell once per round). Nearest: \
{args.spots} random spots in turn. Every answer 2xx.

| request | setup | req/s, median (each round) |
|---|---|---|
{chr(10).join(lines)}

On 2 cores a second process adds workers, not cores: wrk, Caddy, gunicorn and PostgreSQL already share them. App \
processes buy throughput when they run on machines of their own (docs/scaling.md).

Reproduce: `.venv/bin/python -m bench.bench_scale_out --seconds {args.seconds} --spots {args.spots} \
--rounds {args.rounds}`.
""")


if __name__ == "__main__":
    main()
