"""An external PostgreSQL (``DATABASE_URL``) as a first-class deployment.

The "external" server is the suite's own cluster, where the test (a superuser there) makes what a bureau's DBA
would: a login role that is not a superuser and a database it owns, with no extension. ``geoservice db upgrade``
then stops with one line naming the missing extensions and the statement to run; run by a superuser, exactly as
printed, the statement lets the next ``db upgrade`` reach the head. As a superuser, ``db upgrade`` creates the
extensions itself. Backups work for that owner too. Commands run as an administrator runs them, in a subprocess.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from geoservice import db
from geoservice.config import Settings
from geoservice.demo import load_city
from tests.conftest import ROOT, TEST_DB_NAME
from tests.test_backup import assert_one_line_error, execute, scalar, table_checksums, with_database

OWNER = f"{TEST_DB_NAME}_owner"
PREFIX = f"{TEST_DB_NAME}_ext_"


def geoservice(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``geoservice ARGS`` with ``DATABASE_URL`` (and ``env``) set, as an administrator runs it."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GEOSERVICE_APP_DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "geoservice", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**environ, "DATABASE_URL": database_url, **env}, timeout=300, check=False)


def extensions(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT extname FROM pg_extension")).scalars())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[str]:
    """The superuser's URL on the "external" server; its role and databases made by this module are dropped after."""
    url = settings.database_url
    if scalar(url, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is not True:
        pytest.fail("tests/test_external_db.py makes roles and databases: the suite's server must let it (a "
                    "superuser, as the embedded cluster's owner is)")

    def clean() -> None:
        names = [r for r in _databases(url) if r.startswith(PREFIX)]
        for name in names:
            execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        execute(url, f'DROP ROLE IF EXISTS "{OWNER}"')

    clean()
    yield url
    clean()


def _databases(url: str) -> list[str]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT datname FROM pg_database")).scalars().all()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def owner_url(server: str) -> str:
    """A fresh database owned by a login role that is neither a superuser nor allowed to create databases."""
    password = secrets.token_urlsafe(18)
    name = PREFIX + "owned"
    execute(server, f"CREATE ROLE \"{OWNER}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'",
            f'CREATE DATABASE "{name}" OWNER "{OWNER}"')
    return make_url(server).set(username=OWNER, password=password, database=name).render_as_string(
        hide_password=False)


def test_upgrade_names_each_missing_extension_and_the_statement_that_makes_it(server: str, owner_url: str):
    database = make_url(owner_url).database
    refused = geoservice(owner_url, "db", "upgrade")
    assert_one_line_error(refused, "extensions postgis, pgrouting are missing", f"in database {database}",
                          f"role {OWNER} may not create them",
                          "`CREATE EXTENSION postgis; CREATE EXTENSION pgrouting;`")
    assert refused.stdout == ""
    assert extensions(owner_url) == {"plpgsql"}
    assert scalar(owner_url, "SELECT to_regclass('public.alembic_version')") is None  # nothing half made
    # The administrator runs the printed statement, one extension at a time: the next run names only the other.
    statements = re.search(r"`([^`]+)`", refused.stderr).group(1).split("; ")
    execute(with_database(server, database), statements[0])
    again = geoservice(owner_url, "db", "upgrade")
    assert_one_line_error(again, "extension pgrouting is missing", "may not create it",
                          "`CREATE EXTENSION pgrouting;`")
    execute(with_database(server, database), statements[1])
    done = geoservice(owner_url, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert f"schema at revision {db.head_revision()} (was empty)" in done.stdout
    assert scalar(owner_url, "SELECT version_num FROM alembic_version") == db.head_revision()
    # The schema belongs to the owner, not to the superuser who made the extensions.
    assert scalar(owner_url, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'point'") == OWNER


def test_upgrade_as_a_superuser_creates_the_extensions(server: str):
    name = PREFIX + "superuser"
    execute(server, f'CREATE DATABASE "{name}"')
    url = with_database(server, name)
    assert "postgis" not in extensions(url)
    result = geoservice(url, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "extensions created: postgis, pgrouting"
    assert {"postgis", "pgrouting"} <= extensions(url)
    assert scalar(url, "SELECT version_num FROM alembic_version") == db.head_revision()
    # A second run has nothing to create.
    second = geoservice(url, "db", "upgrade")
    assert second.returncode == 0 and "extensions created" not in second.stdout


def test_backups_of_an_external_database_owned_by_a_plain_role(server: str, owner_url: str, demo_city, tmp_path):
    """The owner of test_upgrade_…'s database (now at the head) loads the demo city, backs it up and restores it
    beside it."""
    if scalar(owner_url, "SELECT to_regclass('public.alembic_version')") is None:
        pytest.fail("runs after test_upgrade_names_each_missing_extension_and_the_statement_that_makes_it")
    owner = db.make_engine(owner_url)
    with owner.begin() as conn:
        load_city(conn, demo_city)
    owner.dispose()
    backups = {"GEOSERVICE_BACKUP_DIR": str(tmp_path)}
    made = geoservice(owner_url, "backup", "create", **backups)
    assert made.returncode == 0, made.stderr
    name = PREFIX + "restored"
    # The role may not create databases: one line saying what the administrator runs.
    refused = geoservice(owner_url, "backup", "restore", "latest", "--into", name, **backups)
    assert_one_line_error(refused, f"role {OWNER} may not create databases",
                          f'`CREATE DATABASE "{name}" OWNER {OWNER};`')
    # Made by the administrator as told, with the extensions (as for db upgrade), the restore goes through.
    execute(server, f'CREATE DATABASE "{name}" OWNER "{OWNER}"')
    execute(with_database(server, name), "CREATE EXTENSION postgis", "CREATE EXTENSION pgrouting")
    restored = geoservice(owner_url, "backup", "restore", "latest", "--into", name, **backups)
    assert restored.returncode == 0, restored.stderr
    restored_url = with_database(owner_url, name)
    source = table_checksums(owner_url)
    assert source["point"][0] == len(demo_city.points) and source["street"][0] == len(demo_city.streets)
    assert table_checksums(restored_url) == source
    assert scalar(restored_url, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'point'") == OWNER
