"""A primary and its streaming replicas, made on this machine for the replica and scale-out tests.

The primary is an embedded cluster (``geoservice.db.embedded``) in a folder and on a port of the test's own, with a
replication role; each replica is made from it with ``pg_basebackup -R`` (PostgreSQL's own streaming replication,
``primary_conninfo`` written by pg_basebackup) and runs as a hot standby. The replica's folder has the primary's
password files, so ``EmbeddedCluster`` gives its URLs (the roles and passwords are the primary's: they replicate).
Clusters run as the unprivileged ``settings.pg_os_user`` when the tests run as root, as the embedded cluster does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from geoservice.config import Settings
from geoservice.db.embedded import SUPERUSER, EmbeddedCluster, grant_traverse


def clusters_folder(name: str) -> Path:
    """A new folder for a test's clusters under var/ (the cluster's system user reaches it; /tmp/pytest-of-root is
    closed to it)."""
    from tests.conftest import ROOT

    folder = ROOT / "var" / f"{name}-{os.getpid()}-{time.monotonic_ns()}"
    folder.mkdir(parents=True)
    return folder


REPLICATION_ROLE = "replicator"
REPLICATION_PASSWORD = "streaming-test-only"
WAIT_S = 60


def run_as_cluster_user(settings: Settings, cmd: list[str], *, cwd: Path, env: dict | None = None,
                        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as ``settings.pg_os_user`` when we are root (PostgreSQL refuses root)."""
    kwargs: dict = {"capture_output": True, "text": True, "cwd": str(cwd), "env": {**os.environ, **(env or {})}}
    if os.geteuid() == 0:
        user = pwd.getpwnam(settings.pg_os_user)
        kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        kwargs["env"].update(HOME=user.pw_dir, USER=user.pw_name)
    result = subprocess.run(cmd, check=False, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _chown_to_cluster_user(settings: Settings, *paths: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(settings.pg_os_user)
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)


def sql(cluster: EmbeddedCluster, statement: str, *, database: str = "postgres", params: tuple = ()) -> list[tuple]:
    """Run ``statement`` as the cluster's superuser (autocommit); its rows (empty for a statement without)."""
    conn = psycopg2.connect(host="127.0.0.1", port=cluster.settings.pg_port, user=SUPERUSER,
                            password=cluster.password_file.read_text().strip(), dbname=database, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def make_primary(settings: Settings, root: Path, port: int) -> EmbeddedCluster:
    """An embedded cluster in ``root`` on ``port`` with the database ``settings.db_name`` and a replication role.

    The cluster's own pg_hba.conf (initdb's) already lets replication connections in from 127.0.0.1 with a password;
    the role that may stream is :data:`REPLICATION_ROLE`.
    """
    cluster = EmbeddedCluster(settings.replace(pg_dir=root, pg_port=port))
    cluster.up()
    sql(cluster, f"CREATE ROLE {REPLICATION_ROLE} LOGIN REPLICATION PASSWORD %s", params=(REPLICATION_PASSWORD,))
    return cluster


def make_demo_primary(settings: Settings, root: Path, port: int, city) -> EmbeddedCluster:
    """:func:`make_primary`, migrated to the head and loaded with ``city`` (the demo city)."""
    from geoservice import db
    from geoservice.demo import load_city

    cluster = make_primary(settings, root, port)
    engine = db.make_engine(cluster.url())
    try:
        with engine.connect() as conn:
            db.upgrade(conn)
            with conn.begin():
                load_city(conn, city)
    except BaseException:
        cluster.down()  # a fixture that fails in its set-up is not torn down: leave no server behind
        raise
    finally:
        engine.dispose()
    return cluster


@dataclass
class Replica:
    """A hot standby made from a primary; ``cluster`` gives its URLs, status and ``down()``."""

    cluster: EmbeddedCluster

    @property
    def settings(self) -> Settings:
        return self.cluster.settings

    def start(self) -> None:
        """Start (again) the replica; wait until it accepts connections."""
        options = f"-p {self.settings.pg_port} -k {self.cluster.socket_dir} -h 127.0.0.1"
        run_as_cluster_user(self.settings, [
            str(self.settings.pg_bin / "pg_ctl"), "start", "-D", str(self.cluster.data_dir), "-l",
            str(self.cluster.log_file), "-o", options, "-w", "-t", str(WAIT_S)], cwd=self.cluster.root)

    def stop(self) -> None:
        """Stop the replica (fast shutdown)."""
        self.cluster.down()

    def promote(self) -> None:
        """Make the replica a primary (``pg_ctl promote``); wait until it takes writes."""
        run_as_cluster_user(self.settings, [
            str(self.settings.pg_bin / "pg_ctl"), "promote", "-D", str(self.cluster.data_dir), "-w", "-t",
            str(WAIT_S)], cwd=self.cluster.root)

    def pause_replay(self) -> None:
        """Stop applying the primary's WAL (it is still received): the replica lags from now on."""
        sql(self.cluster, "SELECT pg_wal_replay_pause()")
        wait_until(lambda: sql(self.cluster, "SELECT pg_get_wal_replay_pause_state()")[0][0] == "paused",
                   "the replay to pause")

    def resume_replay(self) -> None:
        """Apply the primary's WAL again."""
        sql(self.cluster, "SELECT pg_wal_replay_resume()")

    def replayed_lsn(self) -> str:
        """The WAL position the replica has applied."""
        return sql(self.cluster, "SELECT pg_last_wal_replay_lsn()::text")[0][0]

    def receive_all(self, primary: EmbeddedCluster) -> None:
        """Wait until the replica has received (not necessarily applied) everything the primary has written so far."""
        target = sql(primary, "SELECT pg_current_wal_lsn()::text")[0][0]
        wait_until(lambda: sql(self.cluster, "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn",
                               params=(target,))[0][0], f"the replica to receive up to {target}")

    def catch_up(self, primary: EmbeddedCluster) -> None:
        """Wait until the replica has applied everything the primary has written so far."""
        target = sql(primary, "SELECT pg_current_wal_lsn()::text")[0][0]
        wait_until(lambda: sql(self.cluster, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                               params=(target,))[0][0], f"the replica to replay up to {target}")


def make_replica(primary: EmbeddedCluster, root: Path, port: int) -> Replica:
    """A streaming replica of ``primary`` in ``root`` on ``port``, made with ``pg_basebackup -R`` and started."""
    settings = primary.settings.replace(pg_dir=root, pg_port=port)
    replica = EmbeddedCluster(settings)
    for folder in (replica.root, replica.socket_dir, replica.log_file.parent):
        folder.mkdir(parents=True, exist_ok=True)
    for secret in (primary.password_file, primary.app_password_file):
        shutil.copy2(secret, replica.root / secret.name)
    _chown_to_cluster_user(settings, replica.root, replica.socket_dir, replica.log_file.parent,
                           replica.password_file, replica.app_password_file)
    os.chmod(replica.root, 0o700)
    if os.geteuid() == 0:
        grant_traverse(replica.root, settings.pg_os_user)
    run_as_cluster_user(settings, [
        str(settings.pg_bin / "pg_basebackup"), "-D", str(replica.data_dir), "-h", "127.0.0.1", "-p",
        str(primary.settings.pg_port), "-U", REPLICATION_ROLE, "-X", "stream", "-R", "-c", "fast", "--no-sync",
    ], cwd=replica.root, env={"PGPASSWORD": REPLICATION_PASSWORD})
    made = Replica(replica)
    made.start()
    wait_until(lambda: sql(replica, "SELECT pg_is_in_recovery()")[0][0], "the replica to run as a standby")
    made.catch_up(primary)
    return made


def libpq_multi_host_url(url: str, *hosts: tuple[str, int], **query: str) -> str:
    """``url`` (one host) rewritten to libpq's multi-host form: ``…@/db?host=h1:p1&host=h2:p2&…``."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    return parsed.set(host=None, port=None, query={"host": [f"{h}:{p}" for h, p in hosts], **query}).render_as_string(
        hide_password=False)


def wait_until(condition, what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout_s`` naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        time.sleep(0.1)
