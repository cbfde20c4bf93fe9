"""The embedded PostgreSQL + PostGIS + pgRouting cluster that geoservice runs in a folder it owns.

Used when no ``DATABASE_URL`` is set. The cluster lives in ``settings.pg_dir`` (``data/``, ``run/`` for the
socket, ``log/``, the generated superuser ``password`` and the web app role's ``app_password``), listens on
127.0.0.1 only and requires a password.

Two roles: the superuser ``geoservice`` owns everything and is what the command line connects as (it must create
the extensions); the web app connects as ``geoservice_app`` (``geoservice.db.APP_ROLE``), which is not a superuser,
owns nothing and can create nothing here: each database is closed to PUBLIC but for the app role's CONNECT, without
TEMP, without CREATE on schema ``public``, and without the functions that create large objects. What it may read is
granted by ``geoservice.db.grant_app_access`` when the migrations reach their head.

``initdb`` and ``postgres`` refuse to run as root, so when the caller is root every cluster command runs as the
unprivileged ``settings.pg_os_user``, which then owns the folder. ``up`` is idempotent and recovers from a stale
``postmaster.pid`` left by a crash or ``kill -9``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql

from geoservice.config import Settings
from geoservice.errors import EmbeddedDatabaseError

SUPERUSER = "geoservice"
APP_ROLE = "geoservice_app"  # the web app's role; geoservice.db re-exports it
APP_ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
# Functions PUBLIC may call that create an object owned by the caller (a large object).
CREATING_FUNCTIONS = ("lo_create(oid)", "lo_creat(integer)", "lo_from_bytea(oid, bytea)")
EXTENSIONS = ("postgis", "pgrouting")
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class ClusterStatus:
    """What ``db status`` reports."""

    initialized: bool
    running: bool
    pid: int | None
    port: int
    data_dir: Path


def grant_traverse(path: Path, user: str) -> None:
    """Let ``user`` reach ``path`` through ancestors it cannot enter (e.g. a clone under /root, mode 700).

    Only the search (x) permission is granted, by ACL where ``setfacl`` exists (package acl), else to others.
    """
    for ancestor in Path(path).resolve().parents:
        mode = ancestor.stat().st_mode
        if mode & 0o001:
            continue
        if shutil.which("setfacl"):
            subprocess.run(["setfacl", "-m", f"u:{user}:x", str(ancestor)], check=True)
        else:
            os.chmod(ancestor, mode | 0o001)


class EmbeddedCluster:
    """One embedded cluster, described by the settings that locate it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.pg_dir.resolve()
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log_file = self.root / "log" / "postgres.log"
        self.password_file = self.root / "password"
        self.app_password_file = self.root / "app_password"

    # -- what the rest of the project uses -------------------------------------------------------------

    def url(self, database: str | None = None) -> str:
        """The SQLAlchemy URL of ``database`` (default: the configured one) in this cluster."""
        password = self._password()
        name = database or self.settings.db_name
        return f"postgresql+psycopg2://{SUPERUSER}:{password}@127.0.0.1:{self.settings.pg_port}/{name}"

    def redacted_url(self, database: str | None = None) -> str:
        """The URL with the password hidden, safe to print."""
        name = database or self.settings.db_name
        return f"postgresql://{SUPERUSER}:***@127.0.0.1:{self.settings.pg_port}/{name}"

    def app_url(self, database: str | None = None) -> str:
        """The SQLAlchemy URL the web app connects with: ``APP_ROLE``, which may only read."""
        try:
            password = self.app_password_file.read_text().strip()
        except OSError as exc:
            raise EmbeddedDatabaseError(
                f"the embedded cluster in {self.root} has no app role yet; run 'geoservice db up'") from exc
        name = database or self.settings.db_name
        return f"postgresql+psycopg2://{APP_ROLE}:{password}@127.0.0.1:{self.settings.pg_port}/{name}"

    def up(self) -> str:
        """Create the cluster if needed, start it if stopped, ensure the database and extensions exist.

        Returns:
            The redacted URL the database is served at.
        """
        self._check_binaries()
        if not (self.data_dir / "PG_VERSION").exists():
            self._init()
        if not self.status().running:
            self._clear_stale_pid()
            self._start()
        self.ensure_database(self.settings.db_name)
        return self.redacted_url()

    def down(self) -> bool:
        """Stop the cluster (fast shutdown). Returns False if it was not running."""
        if not self.status().running:
            return False
        self._run([self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60"])
        return True

    def status(self) -> ClusterStatus:
        """Whether the cluster exists and runs, by the pid file and the process it names."""
        initialized = (self.data_dir / "PG_VERSION").exists()
        pid = self._live_postmaster_pid() if initialized else None
        return ClusterStatus(initialized, pid is not None, pid, self.settings.pg_port, self.data_dir)

    def ensure_database(self, name: str) -> None:
        """Create database ``name`` with the PostGIS and pgRouting extensions unless it exists.

        The app role may connect to it and do nothing more there (its table privileges come with the migrations).
        """
        def create(cur) -> None:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

        def extend(cur) -> None:
            for ext in EXTENSIONS:
                cur.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} CASCADE").format(sql.Identifier(ext)))
            _close_to_public(cur, name)
            cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(APP_ROLE)))

        self.ensure_app_role()
        self._autocommit("postgres", create)
        self._autocommit(name, extend)

    def ensure_app_role(self) -> None:
        """Create the web app's role, or reset its attributes and password; the password is kept in ``app_password``.

        The maintenance database ``postgres`` is closed to it.
        """
        if not self.app_password_file.exists():
            self._write_secret(self.app_password_file)
        password = self.app_password_file.read_text().strip()

        def create(cur) -> None:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(sql.SQL(f"{verb} ROLE {{}} {APP_ROLE_ATTRIBUTES} PASSWORD %s").format(
                sql.Identifier(APP_ROLE)), (password,))
            _close_to_public(cur, "postgres")

        self._autocommit("postgres", create)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists (used by the test suite for its own database)."""
        self._autocommit("postgres", lambda cur: cur.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))))

    # -- internals ----------------------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        return str(self.settings.pg_bin / name)

    def _check_binaries(self) -> None:
        missing = [n for n in ("initdb", "pg_ctl", "postgres") if not Path(self._bin(n)).exists()]
        if missing:
            raise EmbeddedDatabaseError(
                f"PostgreSQL programs {', '.join(missing)} not found in {self.settings.pg_bin}; install "
                "postgresql-15, postgresql-15-postgis-3 and postgresql-15-pgrouting (make run does) "
                "or set GEOSERVICE_PG_BIN"
            )

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _os_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.settings.pg_os_user)
        except KeyError as exc:
            raise EmbeddedDatabaseError(
                f"running as root, the embedded cluster needs the unprivileged user "
                f"{self.settings.pg_os_user!r}, which does not exist; install postgresql-15 (it creates "
                "'postgres') or set GEOSERVICE_PG_OS_USER"
            ) from exc

    def _run(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a cluster program, as the unprivileged user when we are root."""
        kwargs: dict = {"capture_output": True, "text": True, "cwd": str(self.root)}
        if self._as_root():
            user = self._os_user()
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                          env={**os.environ, "HOME": user.pw_dir, "USER": user.pw_name})
        result = subprocess.run(cmd, check=False, **kwargs)
        if check and result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise EmbeddedDatabaseError(f"{Path(cmd[0]).name} failed: {' / '.join(tail)} (log: {self.log_file})")
        return result

    def _prepare_folder(self) -> None:
        for folder in (self.root, self.socket_dir, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        if self._as_root():
            user = self._os_user()
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
            grant_traverse(self.root, user.pw_name)
        os.chmod(self.root, 0o700)

    def _init(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise EmbeddedDatabaseError(
                f"{self.data_dir} is not empty but holds no cluster; move it away or set GEOSERVICE_PG_DIR"
            )
        self._prepare_folder()
        if not self.password_file.exists():
            self._write_secret(self.password_file)
        self._run([
            self._bin("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=scram-sha-256",
            f"--pwfile={self.password_file}", "-E", "UTF8", "--locale=C.UTF-8",
        ])
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# geoservice embedded cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                "shared_buffers = 256MB\n"
                "work_mem = 32MB\n"
                "maintenance_work_mem = 256MB\n"
                "max_connections = 100\n"
                "logging_collector = off\n"
            )

    def _write_secret(self, path: Path) -> None:
        """A new random password in ``path``, readable by its owner only (the cluster's system user when root)."""
        path.write_text(secrets.token_urlsafe(24))
        if self._as_root():
            user = self._os_user()
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(path, 0o600)

    def _live_postmaster_pid(self) -> int | None:
        """The pid in postmaster.pid if that process is alive and is a postgres; else None."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # A zombie left by kill -9 still has a /proc entry but serves nothing.
        state = stat.rsplit(")", 1)[-1].split()[0]
        if state == "Z" or b"postgres" not in cmdline:
            return None
        return pid

    def _clear_stale_pid(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists() and self._live_postmaster_pid() is None:
            pid_file.unlink()

    def _start(self) -> None:
        self._prepare_folder()
        options = f"-p {self.settings.pg_port} -k {self.socket_dir} -h 127.0.0.1"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            # Right after a kill -9 the old backends may still hold the shared memory for a moment.
            result = self._run([
                self._bin("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                "-o", options, "-w", "-t", str(START_TIMEOUT_S),
            ], check=False)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                tail = self.log_file.read_text(errors="replace").strip().splitlines()[-3:]
                raise EmbeddedDatabaseError(f"postgres did not start: {' / '.join(tail)} (log: {self.log_file})")
            time.sleep(1)
            self._clear_stale_pid()

    def _password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise EmbeddedDatabaseError(
                f"the embedded cluster in {self.root} is not set up; run 'geoservice db up'"
            ) from exc

    def _autocommit(self, database: str, work) -> None:
        conn = self._connect(database)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                work(cur)
        finally:
            conn.close()

    def _connect(self, database: str):
        try:
            return psycopg2.connect(
                host="127.0.0.1", port=self.settings.pg_port, user=SUPERUSER, password=self._password(),
                dbname=database, connect_timeout=10,
            )
        except psycopg2.OperationalError as exc:
            raise EmbeddedDatabaseError(
                f"cannot connect to the embedded cluster on 127.0.0.1:{self.settings.pg_port}; "
                "is it running ('geoservice db status')?"
            ) from exc


def _close_to_public(cur, database: str) -> None:
    """Close the database ``cur`` is connected to (named ``database``) to PUBLIC.

    PUBLIC may neither connect, nor make temporary tables, nor create in schema ``public``, nor create large objects.
    Only non-superusers notice: the app role.
    """
    cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
    cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    for function in CREATING_FUNCTIONS:
        cur.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
