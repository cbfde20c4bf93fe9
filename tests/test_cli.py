"""The command line against the suite's database: exit codes, one-line errors, printed counts."""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa

from tests.conftest import ROOT, free_port


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geoservice", *args], check=False, cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)


def test_every_command_has_help():
    for args in (["--help"], ["db", "--help"], ["db", "up", "--help"], ["db", "down", "--help"],
                 ["db", "status", "--help"], ["db", "upgrade", "--help"], ["demo", "load", "--help"],
                 ["serve", "--help"], ["network", "rebuild", "--help"]):
        result = run_cli(*args, env={})
        assert result.returncode == 0 and "Usage:" in result.stdout, args


def test_demo_load_prints_the_counts_and_is_repeatable(settings, engine):
    env = {"DATABASE_URL": settings.database_url}
    outputs = [run_cli("demo", "load", *args, env=env) for args in ((), (), ("--replace",), ("--if-empty",))]
    for result in outputs:
        assert result.returncode == 0, result.stderr
        assert "point 172" in result.stdout and "vendor" not in result.stderr
    assert outputs[0].stdout == outputs[1].stdout  # the database holds the demo city: nothing to do, twice


def test_unreachable_database_is_one_line_and_exit_1():
    result = run_cli("demo", "load", env={"DATABASE_URL": f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x"})
    assert result.returncode == 1
    assert result.stderr.startswith("geoservice: database not reachable")
    assert result.stderr.count("\n") == 1
    assert "hunter2" not in result.stderr


def test_bad_setting_is_exit_2_with_reason():
    result = run_cli("db", "status", env={"GEOSERVICE_BASEMAP": "google"})
    assert result.returncode == 2
    assert "basemap must be one of osm, tianditu, none" in result.stderr


def test_serve_rejects_a_bad_port():
    result = run_cli("serve", "--port", "0", env={})
    assert result.returncode == 2
    assert "--port" in result.stderr


def test_network_rebuild_reports_the_demo_network_as_noded_and_connected(settings, engine):
    # The demo streets are already split at intersections, so a rebuild adds no segment; it commits, so the demo
    # city is loaded again afterwards (--replace: the rebuilt network is no longer the demo's own rows) to leave the
    # suite's database as the other tests expect it.
    env = {"DATABASE_URL": settings.database_url}
    with engine.connect() as conn:
        streets = conn.execute(sa.text("SELECT count(*) FROM street")).scalar_one()
    try:
        result = run_cli("network", "rebuild", env=env)
        assert result.returncode == 0, result.stderr
        assert f"network rebuilt: {streets} edges (0 added by splitting)" in result.stdout
        assert "1 connected parts" in result.stdout
    finally:
        assert run_cli("demo", "load", "--replace", env=env).returncode == 0


def test_network_rebuild_refuses_a_negative_tolerance():
    result = run_cli("network", "rebuild", "--tolerance", "-1", env={})
    assert result.returncode == 2
    assert "--tolerance" in result.stderr
