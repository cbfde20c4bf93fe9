"""Engine, connections and migrations: how every other part of geoservice reaches PostGIS.

``database_url(settings)`` is the one place that decides between ``DATABASE_URL`` and the embedded cluster: the
owner, which the command line uses (migrations, imports, demo load, network rebuild). ``app_database_url(settings)``
is what the web app connects with: the role ``APP_ROLE``, which may only read (``grant_app_access``).
``init_app(app)`` wires the database into Flask: one engine per app (the primary) and the read replicas
(``geoservice.db.replicas``), one connection per request on ``g`` — to a replica for the public's reads, else to the
primary — returned to the pool at teardown.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy.engine import Connection, Engine

from geoservice import catalogue
from geoservice.config import Settings
from geoservice.db.embedded import APP_ROLE, EXTENSIONS, EmbeddedCluster
from geoservice.db.replicas import CONNECT_TIMEOUT_S, ReplicaSet, reads_from_replica
from geoservice.errors import MissingExtension

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _with_driver(url: str) -> str:
    """Accept libpq spellings; pin the driver we install (SQLAlchemy 2.1 would pick psycopg 3 otherwise)."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme):]
    return url


def database_url(settings: Settings) -> str:
    """The owner's SQLAlchemy URL (what the command line uses): ``DATABASE_URL`` if set, else the embedded cluster's."""
    if settings.database_url:
        return _with_driver(settings.database_url)
    return EmbeddedCluster(settings).url()


def app_database_url(settings: Settings) -> str:
    """The web app's SQLAlchemy URL.

    ``GEOSERVICE_APP_DATABASE_URL`` if set; else ``DATABASE_URL`` if that is set (an external server whose
    administrator has made no app role: the app runs as the owner, as before); else the embedded cluster's
    ``APP_ROLE``, which may only read.
    """
    if settings.app_database_url:
        return _with_driver(settings.app_database_url)
    if settings.database_url:
        return database_url(settings)
    return EmbeddedCluster(settings).app_url()


def make_engine(url: str, **kwargs) -> Engine:
    """An engine with the options geoservice relies on (pre-ping so a restarted DB is survived)."""
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("connect_timeout", 10)
    connect_args.setdefault("application_name", "geoservice")
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def make_replica_set(settings: Settings, **kwargs) -> ReplicaSet:
    """The read replicas of ``settings.replica_urls`` (none: an empty set), with the engine options ``kwargs``.

    A replica is left out of the rotation for ``replica_retry_s`` after failing to connect, and while its replay lags
    more than ``replica_max_lag_s``.
    """
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, **kwargs.pop("connect_args", {})}
    engines = [make_engine(_with_driver(url), connect_args=dict(connect_args), **kwargs)
               for url in settings.replica_urls]
    return ReplicaSet(engines, retry_s=settings.replica_retry_s, max_lag_s=settings.replica_max_lag_s)


def ensure_extensions(connection: Connection) -> tuple[str, ...]:
    """Create the extensions geoservice needs (``postgis``, ``pgrouting``) in the database when they are missing.

    On an external server the owner is often not a superuser, and PostGIS and pgRouting are not "trusted" extensions:
    only a superuser may create them. Then nothing is created and the error names what an administrator must run.

    Returns:
        The extensions created now (empty when all were there).

    Raises:
        MissingExtension: an extension is not installed on the server, or the role may not create it.
    """
    present = set(connection.execute(sa.text("SELECT extname FROM pg_extension")).scalars())
    missing = [name for name in EXTENSIONS if name not in present]
    if not missing:
        return ()
    database = connection.execute(sa.text("SELECT current_database()")).scalar_one()
    available = set(connection.execute(sa.text("SELECT name FROM pg_available_extensions")).scalars())
    absent = [name for name in missing if name not in available]
    if absent:
        raise MissingExtension(
            f"the database server has no {' or '.join(absent)} extension to create in database {database}: "
            "install postgresql-15-postgis-3 and postgresql-15-pgrouting (Debian; the packages of the server's "
            "PostgreSQL version) on the server, then run geoservice db upgrade again")
    created = []
    for position, name in enumerate(missing):
        try:
            # A savepoint: a refused CREATE would otherwise abort the caller's transaction.
            with connection.begin_nested():
                connection.execute(sa.text(f"CREATE EXTENSION IF NOT EXISTS {_quote(connection, name)} CASCADE"))
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "pgcode", None) != "42501":  # insufficient_privilege
                raise
            role = connection.execute(sa.text("SELECT current_user")).scalar_one()
            refused = missing[position:]
            statements = " ".join(f"CREATE EXTENSION {n};" for n in refused)
            what = (f"extension {refused[0]} is missing" if len(refused) == 1 else
                    f"extensions {', '.join(refused)} are missing")
            raise MissingExtension(
                f"{what} in database {database} and role {role} may not create {'it' if len(refused) == 1 else 'them'}"
                f": a superuser must run `{statements}` in database {database} (e.g. sudo -u postgres psql -d "
                f"{database} -c '{statements}'), then run geoservice db upgrade again") from None
        created.append(name)
    return tuple(created)


def upgrade(connection: Connection, revision: str = "head") -> bool:
    """Apply the Alembic migrations up to ``revision`` on ``connection``, committing as it goes.

    ``connection`` must have no transaction begun (``engine.connect()``, not ``engine.begin()``): the upgrade
    manages its own, and commits each step before the next one starts, so that a migration may build an index
    ``CONCURRENTLY`` (outside any transaction, letting the app's writers through) and a lock one migration takes is
    released when it commits, not when the last one does. In order, each in a transaction of its own:

    1. the extensions (:func:`ensure_extensions`): on a fresh external database the first migration would otherwise
       fail on a type PostGIS defines;
    2. each pending migration (``transaction_per_migration`` in ``migrations/env.py``); one that fails is rolled
       back and the database stays at the last migration committed, which the next upgrade continues from;
    3. at the head, the web app's role is given exactly its privileges (:func:`grant_app_access`).

    The connection is left with no transaction begun.

    Returns:
        Whether the app role exists here and was granted its privileges.

    Raises:
        ValueError: ``connection`` is inside a transaction (its work would be committed by the first migration).
        MissingExtension: PostGIS or pgRouting is missing and cannot be created by this role.
    """
    from alembic import command
    from alembic.config import Config

    if connection.in_transaction():
        raise ValueError("db.upgrade needs a connection with no transaction begun (engine.connect(), "
                         "then commit or roll back what the caller did first)")
    with connection.begin():
        ensure_extensions(connection)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, revision)
    except sa.exc.PendingRollbackError as exc:
        # A connection lost inside a migration's autocommit block (a concurrent index build): Alembic's cleanup
        # then fails on the dead connection and would hide the error that says what happened.
        if isinstance(exc.__context__, sa.exc.DBAPIError):
            raise exc.__context__ from None
        raise
    # With nothing pending, Alembic's read of the current revision is left in a transaction of its own.
    connection.commit()
    if revision != "head":
        return False
    with connection.begin():
        return grant_app_access(connection)


# -- least privilege: what the web app's role may do ---------------------------------------------------------------
#
# The owner (the embedded cluster's superuser, or DATABASE_URL's role) owns the schema and does everything the
# command line does. The web app connects as APP_ROLE: not a superuser, owning nothing, unable to create anything
# (the embedded cluster also takes TEMP and large objects away from PUBLIC, see embedded.py), and granted exactly the
# privileges below, applied again by every `db up` / `db upgrade` (so they follow the schema at its head). PostGIS
# and pgRouting functions are EXECUTE-able by PUBLIC already; nothing is granted on them.

APP_READS: tuple[str, ...] = (
    *catalogue.TABLES,   # the city's tables: layers, OGC items, queries, /healthz row counts
    "data_version",      # the results cache's key (results_cache.data_version)
    "alembic_version",   # /healthz shows the schema revision
    "app_user", "user_point", "api_token", "login_failure",  # who is logged in, and what they may do
    "audit_log",         # a feature's history
)
"""Tables the web app reads (SELECT)."""

APP_WRITES: dict[str, tuple[str, ...]] = {
    # The editing API (geoservice.editing): planners create, move and delete; staff and officers update.
    "point": ("INSERT", "UPDATE", "DELETE"),
    "grid": ("INSERT", "UPDATE", "DELETE"),
    "squad": ("INSERT", "UPDATE", "DELETE"),
    # The data-version triggers run as the writer.
    "data_version": ("UPDATE",),
    # Every change leaves a row; the app can neither change nor remove one.
    "audit_log": ("INSERT",),
    # Failed logins are counted (and forgotten after a good one) across every app process.
    "login_failure": ("INSERT", "DELETE"),
    # A token's last use.
    "api_token": ("UPDATE",),
}
"""Tables the web app writes, and how. Accounts themselves are managed by the command line (the owner), never by
the app."""

APP_SEQUENCES: tuple[str, ...] = ("data_version_seq", "point_id_seq", "squad_id_seq", "audit_log_id_seq",
                                  "login_failure_id_seq")
"""Sequences the web app draws numbers from (USAGE): the data version and the ids of the tables it inserts into."""


def app_role_exists(connection: Connection) -> bool:
    """Whether ``APP_ROLE`` exists on this server."""
    return connection.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).first() is not None


def grant_app_access(connection: Connection) -> bool:
    """Give ``APP_ROLE`` exactly ``APP_READS``, ``APP_WRITES`` and ``APP_SEQUENCES``; idempotent.

    Every other privilege it holds on a table or sequence the connecting role owns in schema ``public`` is revoked.

    Returns:
        False (and nothing is done) when the role does not exist: an external server whose administrator has not
        created it (README, "Least privilege").
    """
    if not app_role_exists(connection):
        return False
    owned = connection.execute(sa.text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
        "AND pg_has_role(current_user, c.relowner, 'MEMBER')")).scalars().all()
    role = _quote(connection, APP_ROLE)
    for name in owned:
        connection.execute(sa.text(f"REVOKE ALL ON {_quote(connection, name)} FROM {role}"))
    grants = [("SELECT", APP_READS), *((", ".join(p), (t,)) for t, p in APP_WRITES.items())]
    if APP_SEQUENCES:
        grants.append(("USAGE", APP_SEQUENCES))
    for privileges, tables in grants:
        names = ", ".join(_quote(connection, t) for t in tables)
        connection.execute(sa.text(f"GRANT {privileges} ON {names} TO {role}"))
    return True


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def current_revision(connection: Connection) -> str | None:
    """The Alembic revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest migration shipped with this version of geoservice."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def init_app(app: Flask, engine: Engine, replicas: ReplicaSet | None = None) -> None:
    """Attach the primary's ``engine`` and the read ``replicas`` to ``app``; close requests' connections at teardown."""
    app.extensions["geoservice.engine"] = engine
    app.extensions["geoservice.replicas"] = replicas if replicas is not None else ReplicaSet((), retry_s=1)
    app.teardown_appcontext(_close_connection)


def get_engine() -> Engine:
    """The current app's engine on the primary: what writes, logins and logged-in users use."""
    return current_app.extensions["geoservice.engine"]


def get_replicas() -> ReplicaSet:
    """The current app's read replicas (possibly none)."""
    return current_app.extensions["geoservice.replicas"]


def get_connection() -> Connection:
    """The current request's connection, opened on first use.

    To a replica when the request is the public's read (``geoservice.db.replicas``) and one connects, else to the
    primary.
    """
    if "db_connection" not in g:
        g.db_connection = _connect_for_request()
    return g.db_connection


def _connect_for_request() -> Connection:
    replicas = get_replicas()
    if replicas and has_request_context() and _public_read():
        conn = replicas.connect()
        if conn is not None:
            return conn
    return get_engine().connect()


def _public_read() -> bool:
    # The session cookie is decoded apart from the request's own session: touching flask.session marks the answer
    # "Vary: Cookie", and which server answers changes no answer's meaning.
    own = current_app.session_interface.open_session(current_app, request)
    return reads_from_replica(request.method, request.headers, own if own is not None else {})


def _close_connection(_exc: BaseException | None = None) -> None:
    conn = g.pop("db_connection", None)
    if conn is not None:
        conn.close()
