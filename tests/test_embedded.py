"""The embedded cluster: created on first use, idempotent, recovers from kill -9, works as root and not."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

from geoservice import db
from geoservice.db.embedded import EmbeddedCluster, grant_traverse
from tests.conftest import ROOT, free_port


@pytest.fixture()
def cluster_settings(base_settings):
    """Settings for a throw-away cluster of the test's own, in var/ (reachable by the cluster's system user)."""
    folder = ROOT / "var" / f"test-cluster-{os.getpid()}-{time.monotonic_ns()}"
    settings = base_settings.replace(pg_dir=folder, pg_port=free_port(), database_url=None)
    yield settings
    cluster = EmbeddedCluster(settings)
    if cluster.status().running:
        cluster.down()
    shutil.rmtree(folder, ignore_errors=True)


def _extensions(cluster: EmbeddedCluster) -> set[str]:
    conn = psycopg2.connect(cluster.url().replace("postgresql+psycopg2", "postgresql"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT extname FROM pg_extension")
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def _app_role(cluster: EmbeddedCluster) -> tuple[str, bool]:
    """Who the app's URL connects as, and whether that is a superuser."""
    conn = psycopg2.connect(cluster.app_url().replace("postgresql+psycopg2", "postgresql"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, usesuper FROM pg_user WHERE usename = current_user")
            return cur.fetchone()
    finally:
        conn.close()


def test_up_creates_starts_and_is_idempotent(cluster_settings):
    cluster = EmbeddedCluster(cluster_settings)
    assert not cluster.status().initialized
    cluster.up()
    first = cluster.status()
    assert first.running and first.pid
    assert {"postgis", "pgrouting"} <= _extensions(cluster)
    assert _app_role(cluster) == ("geoservice_app", False)
    assert oct(cluster.app_password_file.stat().st_mode & 0o777) == "0o600"
    cluster.app_password_file.unlink()  # lost: the next up makes a new password and sets it
    cluster.up()
    assert cluster.status().pid == first.pid  # the second up changed nothing
    assert _app_role(cluster) == ("geoservice_app", False)
    assert cluster.down() is True
    assert not cluster.status().running
    assert cluster.down() is False


def test_up_recovers_after_kill_9(cluster_settings):
    cluster = EmbeddedCluster(cluster_settings)
    cluster.up()
    pid = cluster.status().pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while cluster.status().running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not cluster.status().running
    assert (cluster.data_dir / "postmaster.pid").exists()  # stale pid file left behind by the crash
    cluster.up()
    assert cluster.status().running
    assert cluster.status().pid != pid
    assert {"postgis", "pgrouting"} <= _extensions(cluster)


def test_stale_pid_file_naming_a_live_unrelated_process_is_ignored(cluster_settings):
    cluster = EmbeddedCluster(cluster_settings)
    cluster.up()
    cluster.down()
    pid_file = cluster.data_dir / "postmaster.pid"
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        pid_file.write_text(f"{sleeper.pid}\n{cluster.data_dir}\n")
        if os.geteuid() == 0:
            user = pwd.getpwnam(cluster_settings.pg_os_user)
            os.chown(pid_file, user.pw_uid, user.pw_gid)
        assert not cluster.status().running
        cluster.up()
        assert cluster.status().running
    finally:
        sleeper.kill()


def _cli(settings, *args: str, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEOSERVICE_PG_DIR": str(settings.pg_dir), "GEOSERVICE_PG_PORT": str(settings.pg_port)}
    env.pop("DATABASE_URL", None)
    prefix = ["runuser", "-u", as_user, "--"] if as_user else []
    return subprocess.run([*prefix, sys.executable, "-m", "geoservice", *args], env=env, cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=300)


def test_cli_db_up_status_down(cluster_settings):
    """As whoever runs the suite (root in CI: the cluster then runs as the unprivileged pg_os_user)."""
    up = _cli(cluster_settings, "db", "up")
    assert up.returncode == 0, up.stderr
    assert f"127.0.0.1:{cluster_settings.pg_port}/geoservice" in up.stdout
    assert "***" in up.stdout and EmbeddedCluster(cluster_settings)._password() not in up.stdout
    assert f"schema at revision {db.head_revision()}" in up.stdout
    status = _cli(cluster_settings, "db", "status")
    assert status.returncode == 0 and "running" in status.stdout
    assert f"revision {db.head_revision()}" in status.stdout
    assert _cli(cluster_settings, "db", "up").returncode == 0
    down = _cli(cluster_settings, "db", "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    status = _cli(cluster_settings, "db", "status")
    assert status.returncode == 1 and "stopped" in status.stderr


def test_cli_db_up_as_a_normal_user(cluster_settings):
    """A non-root caller runs initdb and postgres itself. Under root (CI) we become such a user to check it."""
    if os.geteuid() == 0:
        user = cluster_settings.pg_os_user
        Path(cluster_settings.pg_dir).mkdir(parents=True)
        shutil.chown(cluster_settings.pg_dir, user, user)
        # The interpreter may live under /root (pyenv): let the user reach it, as the cluster folder is reached.
        grant_traverse(Path(os.path.realpath(sys.executable)), user)
        result = _cli(cluster_settings, "db", "up", as_user=user)
    else:
        result = _cli(cluster_settings, "db", "up")
    assert result.returncode == 0, result.stderr
    assert _cli(cluster_settings, "db", "status").returncode == 0


def test_missing_binaries_give_a_clear_error(cluster_settings):
    result = subprocess.run(
        [sys.executable, "-m", "geoservice", "db", "up"], cwd=ROOT, check=False, capture_output=True, text=True,
        env={**os.environ, "GEOSERVICE_PG_DIR": str(cluster_settings.pg_dir), "GEOSERVICE_PG_BIN": "/nonexistent",
             "DATABASE_URL": ""})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "initdb, pg_ctl, postgres not found in /nonexistent" in result.stderr
