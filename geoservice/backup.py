"""Backups of the owner's database: create, list and restore, with retention.

A backup is PostgreSQL's own logical dump (``pg_dump`` custom format, from ``settings.pg_bin``) of the database the
command line uses (``geoservice.db.database_url``: ``DATABASE_URL`` or the embedded cluster's), written to
``settings.backup_dir`` as ``geoservice-YYYYMMDDTHHMMSSZ.dump`` (the UTC time it was taken) beside a JSON sidecar
of the same name: schema revision, time, size, sha256 of the dump and the row count of every table.

- **Consistent.** The revision and row counts are read in one repeatable-read transaction whose snapshot pg_dump is
  given (``--snapshot``): the sidecar describes exactly the rows in the dump, even while the app writes.
- **Complete or absent.** Both files are written under temporary names and renamed, the sidecar last; only a sidecar
  with its dump is a backup, so an interrupted run is never listed or restored. Retention
  (``settings.backup_keep``) removes the oldest only after a new backup is complete.
- **Restore into a new database** (``--into``, a URL or a database name on the same server): refused when that
  database holds tables. Without ``--into`` the current database is replaced, only when asked to (``--yes``): the
  backup is restored into a new database first, and the current one is dropped and the new one renamed in its
  place only when that has succeeded.
- **Checked before and after.** The dump's sha256 must match the sidecar; its schema revision (read from the dump
  itself, and the sidecar's) must be one this geoservice knows — a backup from a newer version is refused, since its
  tables may hold what this code cannot read; after the restore the row counts must be the sidecar's. Then pending
  migrations are applied (an older backup comes up at this code's schema) and the web app's role gets its grants.

Extensions are the server's: a restore needs PostGIS and pgRouting creatable in the new database (as for
``geoservice db upgrade``, :func:`geoservice.db.ensure_extensions`). Objects are restored owned by the restoring role
and without the dump's privileges (``--no-owner --no-acl``): grants are the migrations' business, applied again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from psycopg2.extensions import make_dsn
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.engine import Connection, make_url

from geoservice import db
from geoservice.config import Settings
from geoservice.db.embedded import EmbeddedCluster
from geoservice.errors import BackupError, InvalidParameter, NotFound

PREFIX = "geoservice-"
NAME_PATTERN = re.compile(r"geoservice-\d{8}T\d{6}Z")
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
SIDECAR_FORMAT = 1
ABANDONED_AFTER_S = 24 * 3600
"""A temporary file older than this is a backup that will never finish (deploy/geoservice-backup.service allows 6 h)."""
"""Version of the sidecar's layout, written into it."""

# Restore-list entries left out: an extension's comment can only be set by the extension's owner (a superuser, when an
# administrator created PostGIS for a non-superuser owner), and spatial_ref_sys's own rows are the extension's —
# geoservice uses only the EPSG codes PostGIS ships (settings refuse any other metric CRS).
_SKIPPED_ENTRIES = re.compile(r"^\d+; \d+ \d+ (COMMENT - EXTENSION |TABLE DATA public spatial_ref_sys )")


@dataclass(frozen=True)
class Backup:
    """One complete backup: the dump and what its sidecar says about it."""

    name: str
    """``geoservice-YYYYMMDDTHHMMSSZ``: the files are ``name.dump`` and ``name.json``."""
    created_at: datetime
    schema_revision: str | None
    """The Alembic revision the database was at; None for a database without the schema."""
    size_bytes: int
    sha256: str
    row_counts: dict[str, int]
    database: str
    """The name of the database it was taken from."""
    server_version: str
    path: Path = field(compare=False)
    """The dump file."""

    def sidecar(self) -> dict:
        """The sidecar's JSON content."""
        content = asdict(self)
        content.pop("path")
        return {"format": SIDECAR_FORMAT, **content, "created_at": self.created_at.isoformat(),
                "file": self.path.name}


# -- create ---------------------------------------------------------------------------------------------------------

def create(settings: Settings) -> Backup:
    """Back up the owner's database into ``settings.backup_dir``, then keep only the newest ``settings.backup_keep``.

    Returns:
        The new backup.

    Raises:
        BackupError: pg_dump is missing or failed (its last line is in the message).
    """
    with _database_errors("backup"):
        return _create(settings)


def _create(settings: Settings) -> Backup:
    pg_dump = _program(settings, "pg_dump")
    url = db.database_url(settings)
    folder = _backup_dir(settings)
    created_at, name = _free_name(folder)
    dump, sidecar = folder / f"{name}.dump", folder / f"{name}.json"
    partial_dump, partial_sidecar = folder / f".{name}.dump.partial", folder / f".{name}.json.partial"
    engine = db.make_engine(url)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            # pg_dump reads the snapshot this transaction exported: the revision and counts are the dump's.
            snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
            revision = db.current_revision(conn)  # None before the first migration (no version table)
            counts = row_counts(conn)
            database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
            server_version = conn.execute(sa.text("SHOW server_version")).scalar_one()
            _run([pg_dump, "--format=custom", "--compress=6", f"--snapshot={snapshot}", f"--file={partial_dump}"],
                 url, what="pg_dump")
        size, digest = _size_and_sha256(partial_dump)
        made = Backup(name=name, created_at=created_at, schema_revision=revision, size_bytes=size, sha256=digest,
                      row_counts=counts, database=database, server_version=server_version, path=dump)
        partial_dump.rename(dump)
        partial_sidecar.write_text(json.dumps(made.sidecar(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        partial_sidecar.chmod(0o600)
        partial_sidecar.rename(sidecar)
    finally:
        engine.dispose()
        partial_dump.unlink(missing_ok=True)
        partial_sidecar.unlink(missing_ok=True)
    _apply_retention(settings)
    _remove_abandoned(folder)
    return made


def row_counts(conn: Connection) -> dict[str, int]:
    """Rows in every table of schema ``public`` that geoservice made (not an extension's), by table name."""
    tables = conn.execute(sa.text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT EXISTS ("
        "  SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
        "  AND d.deptype = 'e') "
        "ORDER BY c.relname")).scalars().all()
    quote = conn.dialect.identifier_preparer.quote
    return {t: conn.execute(sa.text(f"SELECT count(*) FROM public.{quote(t)}")).scalar_one() for t in tables}


def _free_name(folder: Path) -> tuple[datetime, str]:
    """The time and name of a new backup, reserved by creating its temporary dump (mode 0600).

    Names are times: a backup started in the same second as another (the timer's and an administrator's) waits for
    the next second.
    """
    while True:
        now = datetime.now(UTC).replace(microsecond=0)
        name = PREFIX + now.strftime(TIME_FORMAT)
        if not (folder / f"{name}.dump").exists():
            try:
                # Exclusive creation: of two processes, one gets the name. Password hashes will be in it: 0600.
                os.close(os.open(folder / f".{name}.dump.partial", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                return now, name
            except FileExistsError:
                pass
        time.sleep(1.05 - datetime.now(UTC).microsecond / 1e6)


def _apply_retention(settings: Settings) -> list[str]:
    """Remove all but the newest ``backup_keep`` backups; returns the names removed."""
    removed = []
    for old in list_backups(settings)[settings.backup_keep:]:
        old.path.with_suffix(".json").unlink(missing_ok=True)  # first: a dump without its sidecar is not a backup
        old.path.unlink(missing_ok=True)
        removed.append(old.name)
    return removed


def _remove_abandoned(folder: Path) -> list[str]:
    """Remove temporary files older than ``ABANDONED_AFTER_S``: left by a backup that was killed or lost its machine."""
    removed = []
    for path in folder.glob(f".{PREFIX}*.partial"):
        if time.time() - path.stat().st_mtime > ABANDONED_AFTER_S:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


# -- list -----------------------------------------------------------------------------------------------------------

def list_backups(settings: Settings) -> list[Backup]:
    """The complete backups in ``settings.backup_dir`` (a sidecar and its dump), newest first."""
    folder = settings.backup_dir
    if not folder.is_dir():
        return []
    found = []
    for sidecar in folder.glob(f"{PREFIX}*.json"):
        if not NAME_PATTERN.fullmatch(sidecar.stem) or not sidecar.with_suffix(".dump").is_file():
            continue
        found.append(_read_sidecar(sidecar))
    return sorted(found, key=lambda b: (b.created_at, b.name), reverse=True)


def _read_sidecar(sidecar: Path) -> Backup:
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8"))
        return Backup(name=sidecar.stem, created_at=datetime.fromisoformat(content["created_at"]),
                      schema_revision=content["schema_revision"], size_bytes=int(content["size_bytes"]),
                      sha256=content["sha256"], row_counts=dict(content["row_counts"]),
                      database=content["database"], server_version=content["server_version"],
                      path=sidecar.with_suffix(".dump"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"backup {sidecar.stem}: its sidecar {sidecar} cannot be read ({exc}); move both of "
                          "its files out of the backup folder") from None


def describe(item: Backup) -> str:
    """One line for ``backup list`` and ``backup create``: name, time, schema revision, size, rows."""
    rows = sum(item.row_counts.values())
    return (f"{item.name}\t{item.created_at:%Y-%m-%d %H:%M:%S} UTC\trevision {item.schema_revision or 'none'}\t"
            f"{_size(item.size_bytes)}\t{rows:,} rows in {len(item.row_counts)} tables\tfrom {item.database}")


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# -- restore --------------------------------------------------------------------------------------------------------

def restore(settings: Settings, name: str, *, into: str | None = None, replace: bool = False) -> str:
    """Restore the backup ``name`` (``latest``: the newest) into a new database, or in place of the current one.

    Args:
        settings: Locate the backups, the current database and the programs.
        name: A backup's name as ``backup list`` shows it (``.dump`` may follow), or ``latest``.
        into: A database URL or a database name on the current server; it must not exist or hold no table.
            None: replace the current database (only with ``replace``).
        replace: Consent to replacing the current database's data (``--yes``).

    Returns:
        One line saying what was restored where, and the schema revision it is now at.

    Raises:
        NotFound: No such backup.
        InvalidParameter: The target holds data, or replacing was not consented to.
        BackupError: The backup is damaged or from a newer schema, or pg_restore failed.
    """
    with _database_errors("restore"):
        return _restore(settings, name, into=into, replace=replace)


def _restore(settings: Settings, name: str, *, into: str | None, replace: bool) -> str:
    item = find(settings, name)
    if into is None and not replace:
        current = make_url(db.database_url(settings)).database
        raise InvalidParameter(f"restoring {item.name} without --into replaces every row of the current database "
                               f"{current}: add --yes to do that, or restore beside it with --into NEW_DATABASE")
    _check_revision(item.name, item.schema_revision)
    _check_dump(settings, item)
    if into is not None:
        target = _target_url(settings, into)
        _restore_new(settings, item, target)
        return _restored_line(item, target)
    current_url = db.database_url(settings)
    current = make_url(current_url).database
    scratch = _url_with_database(current_url, f"{current}_restoring")
    _drop_database(settings, scratch)  # left by an interrupted restore: never the data being served
    _restore_new(settings, item, scratch)
    _swap_in(settings, scratch, current)
    return _restored_line(item, current_url) + f"; the previous data of {current} is gone"


def find(settings: Settings, name: str) -> Backup:
    """The backup called ``name`` (``latest`` for the newest), else NotFound naming the newest ones."""
    backups = list_backups(settings)
    if name == "latest":
        if not backups:
            raise NotFound(f"no backup in {settings.backup_dir}; make one with geoservice backup create")
        return backups[0]
    stem = name.removesuffix(".dump").removesuffix(".json")
    for item in backups:
        if item.name == stem:
            return item
    newest = ", ".join(b.name for b in backups[:3]) or "none"
    raise NotFound(f"no backup {name} in {settings.backup_dir} (newest: {newest}); geoservice backup list shows all")


def revision_order() -> list[str]:
    """This geoservice's migration revisions, oldest first."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    return [script.revision for script in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))]


def _check_revision(name: str, revision: str | None) -> None:
    known = revision_order()
    if revision is not None and revision not in known:
        raise BackupError(f"backup {name} is at schema revision {revision}, newer than this geoservice's newest "
                          f"({known[-1]}): restore it with the geoservice version that made it, or upgrade "
                          "geoservice first")


def _check_dump(settings: Settings, item: Backup) -> None:
    """The dump is the one the sidecar describes (sha256), and the revision inside it is one we know."""
    size, digest = _size_and_sha256(item.path)
    if digest != item.sha256 or size != item.size_bytes:
        raise BackupError(f"backup {item.name} is damaged: its dump's sha256 or size differs from its sidecar's "
                          "(a copy cut short, or changed); use another backup")
    inside = _dump_revision(settings, item.path)
    _check_revision(item.name, inside)
    if inside != item.schema_revision:
        raise BackupError(f"backup {item.name} is inconsistent: its dump is at schema revision {inside}, its sidecar "
                          f"says {item.schema_revision}; use another backup")


def _dump_revision(settings: Settings, dump: Path) -> str | None:
    """The schema revision recorded in the dump's own alembic_version rows (None if the table is not in it)."""
    listing = _run([_program(settings, "pg_restore"), "--list", str(dump)], None, what="pg_restore")
    if not re.search(r"^\d+; \d+ \d+ TABLE DATA public alembic_version ", listing, re.MULTILINE):
        return None
    text = _run([_program(settings, "pg_restore"), "--data-only", "--table=alembic_version",
                           "--file=-", str(dump)], None, what="pg_restore")
    rows = re.search(r"^COPY public\.alembic_version .*? FROM stdin;\n(.*?)^\\\.$", text, re.MULTILINE | re.DOTALL)
    values = rows.group(1).split() if rows else []
    return values[0] if len(values) == 1 else None


def _restore_new(settings: Settings, item: Backup, target: str) -> None:
    """Restore ``item`` into the database of ``target`` (created here when it does not exist, then extended)."""
    made = _prepare_database(settings, target)
    try:
        pg_restore = _program(settings, "pg_restore")
        listing = _run([pg_restore, "--list", str(item.path)], None, what="pg_restore")
        # The backup folder may be read-only (a copy mounted from elsewhere): the list goes to a temporary file.
        with tempfile.NamedTemporaryFile("w", suffix=".restore-list", encoding="utf-8") as wanted:
            wanted.write("".join(line + "\n" for line in listing.splitlines() if not _SKIPPED_ENTRIES.match(line)))
            wanted.flush()
            _run([pg_restore, "--no-owner", "--no-acl", "--single-transaction", "--exit-on-error",
                  f"--use-list={wanted.name}", str(item.path)], target, what="pg_restore")
        engine = db.make_engine(target)
        try:
            with engine.connect() as conn:
                with conn.begin():
                    restored = row_counts(conn)
                if restored != item.row_counts:
                    differ = sorted(t for t in set(restored) | set(item.row_counts)
                                    if restored.get(t) != item.row_counts.get(t))
                    raise BackupError(f"backup {item.name} restored with other row counts than its sidecar's "
                                      f"(tables {', '.join(differ)}); the new database was removed")
                db.upgrade(conn)
        finally:
            engine.dispose()
    except BaseException:
        if made:
            _drop_database(settings, target)
        raise


def _prepare_database(settings: Settings, target: str) -> bool:
    """Make ``target``'s database ready to restore into: created if missing, empty, with the extensions.

    Returns:
        Whether it was created here (and so may be dropped again on failure).
    """
    name = make_url(target).database
    if _embedded_target(settings, target):
        existed = _database_exists(settings, name)
        if not existed:
            # The embedded cluster's own way: extensions, closed to PUBLIC, CONNECT for the app role.
            EmbeddedCluster(settings).ensure_database(name)
    else:
        existed = _database_exists(settings, name, server_url=target)
        if not existed:
            _create_database(settings, target)
    if existed:
        _refuse_non_empty(target)
    engine = db.make_engine(target)
    try:
        with engine.begin() as conn:
            db.ensure_extensions(conn)
    except BaseException:
        engine.dispose()
        if not existed:
            _drop_database(settings, target)
        raise
    engine.dispose()
    return not existed


def _refuse_non_empty(target: str) -> None:
    engine = db.make_engine(target)
    try:
        with engine.connect() as conn:
            tables = row_counts(conn)
            name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    finally:
        engine.dispose()
    if tables:
        raise InvalidParameter(f"database {name} already holds {len(tables)} tables "
                               f"({sum(tables.values()):,} rows): restore into a new database name, or replace "
                               "the current database by restoring without --into (with --yes)")


def _database_exists(settings: Settings, name: str, *, server_url: str | None = None) -> bool:
    # pg_database is shared by every database of a server: ask it from the current database, which surely exists.
    url = db.database_url(settings) if server_url is None or _same_server(settings, server_url) else None
    engine = db.make_engine(url or _url_with_database(server_url, "postgres"))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() \
                is not None
    finally:
        engine.dispose()


def _create_database(settings: Settings, target: str) -> None:
    url = make_url(target)
    admin = db.database_url(settings) if _same_server(settings, target) else _url_with_database(target, "postgres")
    statement = f'CREATE DATABASE "{url.database}"'
    try:
        _autocommit(admin, statement)
    except sa.exc.DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) != "42501":
            raise
        raise BackupError(f"role {url.username} may not create databases: an administrator must run "
                          f"`{statement} OWNER {url.username};` on that server, then restore again with --into "
                          f"{url.database}") from None


def _drop_database(settings: Settings, target: str) -> None:
    name = make_url(target).database
    if _embedded_target(settings, target):
        EmbeddedCluster(settings).drop_database(name)
        return
    admin = db.database_url(settings) if _same_server(settings, target) else _url_with_database(target, "postgres")
    _autocommit(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _swap_in(settings: Settings, scratch: str, current: str) -> None:
    """Put the restored database ``scratch`` in the place of ``current``, dropping the current one.

    The current database's sessions (app processes) are ended; their pools connect again to the restored one.
    """
    scratch_name = make_url(scratch).database
    drop = f'DROP DATABASE IF EXISTS "{current}" WITH (FORCE)'
    rename = f'ALTER DATABASE "{scratch_name}" RENAME TO "{current}"'
    try:
        # Dropping is done from the restored database; renaming it needs a third database to stand in.
        _autocommit(scratch, drop)
    except sa.exc.DBAPIError as exc:
        raise BackupError(f"the backup is restored as database {scratch_name}, but {current} could not be dropped "
                          f"({str(exc.orig).strip().splitlines()[0]}): its owner or a superuser must run `{drop}; "
                          f"{rename};`") from None
    last_error = None
    for stand_in in ("postgres", "template1"):
        try:
            _autocommit(_url_with_database(scratch, stand_in), rename)
            return
        except sa.exc.DBAPIError as exc:
            last_error = exc
            if not isinstance(exc, sa.exc.OperationalError):  # connected, but refused: another stand-in won't do
                break
    raise BackupError(f"the backup is restored as database {scratch_name} and {current} was dropped, but the "
                      f"rename failed ({str(last_error.orig).strip().splitlines()[0]}): an administrator must run "
                      f"`{rename};`")


@contextmanager
def _database_errors(what: str) -> Iterator[None]:
    """A statement the server refused becomes one line (a connection that failed is the command line's to report)."""
    try:
        yield
    except sa.exc.OperationalError:
        raise
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise BackupError(f"{what} failed: {reason}") from None


def _autocommit(url: str, statement: str) -> None:
    engine = db.make_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def _target_url(settings: Settings, into: str) -> str:
    """``--into``: a URL as it is, or a database name on the current server."""
    if "://" in into:
        return db.database_url(settings.replace(database_url=into))
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", into):
        raise InvalidParameter(f"--into: {into!r} is neither a database URL nor a database name (letters, digits "
                               "and _, not starting with a digit)")
    return _url_with_database(db.database_url(settings), into)


def _url_with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _same_server(settings: Settings, url: str) -> bool:
    current, other = make_url(db.database_url(settings)), make_url(url)
    return (current.host, current.port, current.query, current.username) == \
        (other.host, other.port, other.query, other.username)


def _embedded_target(settings: Settings, target: str) -> bool:
    return not settings.database_url and _same_server(settings, target)


def _restored_line(item: Backup, target: str) -> str:
    engine = db.make_engine(target)
    try:
        with engine.connect() as conn:
            revision = db.current_revision(conn)
    finally:
        engine.dispose()
    migrated = "" if revision == item.schema_revision else f", migrated from {item.schema_revision or 'none'}"
    rows = sum(item.row_counts.values())
    return (f"restored {item.name} ({item.created_at:%Y-%m-%d %H:%M:%S} UTC) into database "
            f"{make_url(target).database}: {rows:,} rows in {len(item.row_counts)} tables, as recorded; schema at "
            f"revision {revision}{migrated}")


# -- running PostgreSQL's programs -------------------------------------------------------------------------------

def _program(settings: Settings, name: str) -> str:
    path = settings.pg_bin / name
    if not path.exists():
        raise BackupError(f"{name} not found in {settings.pg_bin}; install postgresql-client-15 (Debian) or set "
                          "GEOSERVICE_PG_BIN")
    return str(path)


def _run(command: list[str], url: str | None, *, what: str) -> str:
    """Run a PostgreSQL program, connected to ``url`` when given (password in the environment, never in argv)."""
    env = dict(os.environ)
    if url is not None:
        _, params = PGDialect_psycopg2().create_connect_args(make_url(url))
        password = params.pop("password", None)
        if password is not None:
            env["PGPASSWORD"] = str(password)
        command = [*command, f"--dbname={make_dsn(**params)}"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise BackupError(f"{what} failed: {lines[-1] if lines else f'exit code {result.returncode}'}")
    return result.stdout


def _backup_dir(settings: Settings) -> Path:
    folder = settings.backup_dir
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BackupError(f"cannot create the backup folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise BackupError(f"the backup folder {folder} is not writable by this user; run as its owner or set "
                          "GEOSERVICE_BACKUP_DIR")
    return folder


def _size_and_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()

