"""Engine, connections and migrations: how every other part of geoservice reaches PostGIS.

``database_url(settings)`` is the one place that decides between ``DATABASE_URL`` and the embedded cluster.
``init_app(app)`` wires the database into Flask: one engine per app, one connection per request on ``g``,
returned to the pool at teardown.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from flask import Flask, current_app, g
from sqlalchemy.engine import Connection, Engine

from geoservice.config import Settings
from geoservice.db.embedded import EmbeddedCluster

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL to use: ``DATABASE_URL`` if set, else the embedded cluster's."""
    if settings.database_url:
        url = settings.database_url
        # Accept libpq spellings; pin the driver we install (SQLAlchemy 2.1 would pick psycopg 3 otherwise).
        for scheme in ("postgres://", "postgresql://"):
            if url.startswith(scheme):
                url = "postgresql+psycopg2://" + url[len(scheme):]
        return url
    return EmbeddedCluster(settings).url()


def make_engine(url: str, **kwargs) -> Engine:
    """An engine with the options geoservice relies on (pre-ping so a restarted DB is survived)."""
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("connect_timeout", 10)
    connect_args.setdefault("application_name", "geoservice")
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision`` on ``connection`` (committed by the caller)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


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


def init_app(app: Flask, engine: Engine) -> None:
    """Attach ``engine`` to ``app`` and close each request's connection at teardown."""
    app.extensions["geoservice.engine"] = engine
    app.teardown_appcontext(_close_connection)


def get_engine() -> Engine:
    """The engine of the current app."""
    return current_app.extensions["geoservice.engine"]


def get_connection() -> Connection:
    """The current request's connection, opened on first use."""
    if "db_connection" not in g:
        g.db_connection = get_engine().connect()
    return g.db_connection


def _close_connection(_exc: BaseException | None = None) -> None:
    conn = g.pop("db_connection", None)
    if conn is not None:
        conn.close()
