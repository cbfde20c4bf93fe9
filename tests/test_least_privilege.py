"""Least privilege (issues 14, 10): the web app connects as a role that reads the city and writes only what
editing needs.

The owner (the command line) migrates, imports and loads; the app role (``geoservice_app``) is not a superuser, owns
nothing, cannot write any table nor create anything, and is what ``create_app`` and ``geoservice serve`` connect as.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import psycopg2.errors
import pytest
import sqlalchemy as sa

from geoservice import catalogue, db
from geoservice.app import create_app
from geoservice.config import Settings
from tests.conftest import TEST_DB_NAME

ROLE = db.APP_ROLE
WRITES = {
    "INSERT": "INSERT INTO {t} DEFAULT VALUES",
    "UPDATE": "UPDATE {t} SET {key} = {key} WHERE false",
    "DELETE": "DELETE FROM {t} WHERE false",
    "TRUNCATE": "TRUNCATE {t}",
}
KEYS = {**{name: t.key for name, t in catalogue.TABLES.items()}, "data_version": "id",
        "alembic_version": "version_num"}
CREATES = {
    "table": "CREATE TABLE public.lp_probe (x int)",
    "temporary table": "CREATE TEMP TABLE lp_probe (x int)",
    "table as": "CREATE TABLE public.lp_probe AS SELECT 1 AS x",
    "view": "CREATE VIEW public.lp_probe AS SELECT 1 AS x",
    "sequence": "CREATE SEQUENCE public.lp_probe",
    "function": "CREATE FUNCTION public.lp_probe() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "temporary function": "CREATE FUNCTION pg_temp.lp_probe() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "schema": "CREATE SCHEMA lp_probe",
    "large object": "SELECT lo_create(0)",
    "large object from bytes": "SELECT lo_from_bytea(0, 'x')",
    "database": "CREATE DATABASE lp_probe",
    "role": "CREATE ROLE lp_probe",
    "extension": "CREATE EXTENSION IF NOT EXISTS hstore",
}


@pytest.fixture(scope="module")
def app_engine(app_database_url: str):
    engine = db.make_engine(app_database_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def as_app(app_engine):
    """A connection as the app role, each statement on its own (autocommit): a statement that should have been
    refused and was not stays visible to the test that reports it."""
    with app_engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def refused(conn, statement: str) -> bool:
    """Whether ``statement`` fails for want of privilege."""
    try:
        conn.execute(sa.text(statement))
    except sa.exc.DBAPIError as exc:
        return isinstance(exc.orig, psycopg2.errors.InsufficientPrivilege)
    return False


def test_the_app_role_is_no_superuser_and_owns_nothing(conn, as_app):
    assert as_app.execute(sa.text("SELECT current_user")).scalar_one() == ROLE
    role = conn.execute(sa.text(
        "SELECT oid, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles "
        "WHERE rolname = :r"), {"r": ROLE}).one()
    assert not any(role[1:]), role
    owned = conn.execute(sa.text("SELECT count(*) FROM pg_shdepend WHERE refobjid = :oid AND deptype = 'o'"),
                         {"oid": role.oid}).scalar_one()
    assert owned == 0
    owner = conn.execute(sa.text("SELECT current_user")).scalar_one()
    assert not conn.execute(sa.text("SELECT pg_has_role(:r, :o, 'MEMBER')"), {"r": ROLE, "o": owner}).scalar_one()


KEYS.update({"app_user": "id", "user_point": "user_id", "api_token": "id", "login_failure": "id",
             "audit_log": "id"})
# Every (table, verb) the app must not do: all but the grants db.APP_WRITES declares (TRUNCATE never).
REFUSED = [(t, v) for t in KEYS for v in WRITES if v not in db.APP_WRITES.get(t, ())]


def test_the_declared_writes_are_few_and_never_touch_accounts_or_history():
    assert set(db.APP_WRITES) <= {"point", "grid", "squad", "data_version", "audit_log", "login_failure",
                                  "api_token"}
    assert db.APP_WRITES["audit_log"] == ("INSERT",)       # the log is never changed or removed by the app
    assert "app_user" not in db.APP_WRITES and "user_point" not in db.APP_WRITES
    assert all("TRUNCATE" not in verbs for verbs in db.APP_WRITES.values())


@pytest.mark.parametrize(("table", "verb"), REFUSED)
def test_the_app_role_cannot_write_a_table_beyond_its_grants(as_app, table, verb):
    assert refused(as_app, WRITES[verb].format(t=table, key=KEYS[table])), f"{verb} on {table} was allowed"


def test_the_app_role_holds_exactly_the_declared_write_privileges(as_app):
    held = as_app.execute(sa.text("""
        SELECT c.relname, p.verb FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(verb)
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND has_table_privilege(c.oid, p.verb)
    """)).all()
    assert sorted(held) == sorted((t, v) for t, verbs in db.APP_WRITES.items() for v in verbs)
    sequences = as_app.execute(sa.text("""
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'USAGE')
                                            ELSE false END
    """)).scalars().all()
    assert sorted(sequences) == sorted(db.APP_SEQUENCES)
    assert not as_app.execute(sa.text("""
        SELECT count(*) FROM pg_class c
        WHERE CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'UPDATE') ELSE false END
    """)).scalar_one()


@pytest.mark.parametrize("what", CREATES)
def test_the_app_role_cannot_create_anything(as_app, what):
    assert refused(as_app, CREATES[what]), f"the app role could create a {what}"


def test_the_app_role_cannot_reach_other_databases(app_database_url):
    engine = db.make_engine(sa.engine.make_url(app_database_url).set(database="postgres"))
    try:
        with pytest.raises(sa.exc.OperationalError, match="CONNECT"):
            engine.connect().close()
    finally:
        engine.dispose()


def test_the_app_role_reads_what_the_app_reads(as_app):
    for table in db.APP_READS:
        as_app.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    assert as_app.execute(sa.text("SELECT count(*) FROM point")).scalar_one() == 172
    versions = as_app.execute(sa.text(
        "SELECT postgis_lib_version(), pgr_version(), pg_try_advisory_xact_lock(1, 1)")).one()
    assert all(versions)
    route = as_app.execute(sa.text(
        "SELECT count(*) FROM pgr_dijkstra('SELECT id, source, target, length_m AS cost FROM street', "
        "(SELECT min(source) FROM street), (SELECT max(target) FROM street), false)")).scalar_one()
    assert route > 0


@pytest.fixture(scope="module")
def default_app(base_settings: Settings, app_settings: Settings, engine):
    """The app as ``create_app`` builds it from the settings an operator has: with the embedded cluster, the
    defaults (no URL at all) pointed at the suite's database; on an external server, its app role's URL."""
    if os.environ.get("GEOSERVICE_TEST_DATABASE_URL") or base_settings.database_url:
        return create_app(app_settings)
    return create_app(base_settings.replace(db_name=TEST_DB_NAME, basemap="none"))


@pytest.mark.parametrize("fixture", ["default_app", "app"])
def test_the_app_connects_as_the_app_role(request, fixture):
    app = request.getfixturevalue(fixture)
    with app.app_context(), db.get_engine().connect() as conn:
        assert conn.execute(sa.text("SELECT current_user")).scalar_one() == ROLE


@pytest.mark.parametrize("path", [
    "/healthz?counts=exact",
    "/api/v1/nearest?lon=113.826&lat=34.026&k=3",
    "/api/v1/nearest?lon=113.826&lat=34.026&k=3&mode=walk",
    "/api/v1/grids/at?lon=113.826&lat=34.026",
    "/api/v1/coverage/grids?radius=500",
    "/api/v1/layers/points?limit=5",
    "/api/v1/points/search?q=三八路",
    "/ogc/collections/points/items?limit=5",
    "/",
])
def test_the_app_works_as_the_app_role(default_app, path):
    response = default_app.test_client().get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    if path.startswith("/healthz"):
        body = response.get_json()
        assert body["database"]["counts"]["point"] == 172 and body["database"]["schema_revision"]


def _own_socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _inode_of_client_port(port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                return fields[9]
    return None


def test_the_served_app_connects_as_the_app_role(served, conn):
    """``geoservice serve`` (the ``served`` fixture): the database sessions that come from another process than
    this test's are the app role's."""
    with urllib.request.urlopen(served + "/api/v1/nearest?lon=113.826&lat=34.026&k=1", timeout=30) as response:
        assert json.load(response)["features"]
    sessions = conn.execute(sa.text(
        "SELECT usename, client_port FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'geoservice' AND client_port > 0 AND pid <> pg_backend_pid()")).all()
    ours = _own_socket_inodes()
    foreign = {user for user, port in sessions if _inode_of_client_port(port) not in ours}
    assert foreign == {ROLE}, sessions
