"""Backups: ``geoservice backup create|list|restore`` (geoservice.backup).

Every check of restored data is independent of the code under test: the tables are listed from
information_schema, and each one's rows are hashed in SQL (md5 of the rows' text in the order of that text) on the
source and on the restored database; sequences are compared by their last values. Commands whose answer is a line
on the terminal are run as the administrator runs them: ``python -m geoservice`` in a subprocess.
"""

from __future__ import annotations

import configparser
import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from geoservice import accounts, backup, catalogue, db
from geoservice.config import Settings
from geoservice.db.embedded import EmbeddedCluster
from tests.conftest import ROOT, TEST_DB_NAME

ACCOUNT_TABLES = {"app_user", "user_point", "api_token", "login_failure", "audit_log"}
SCRATCH_PREFIX = f"{TEST_DB_NAME}_bk_"


# -- independent checks ---------------------------------------------------------------------------------------------

def table_checksums(url: str) -> dict[str, tuple[int, str]]:
    """Rows and md5 of the ordered rows of every base table in schema public but PostGIS's spatial_ref_sys."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_type = 'BASE TABLE' AND table_name <> 'spatial_ref_sys' ORDER BY 1")).scalars().all()
            return {t: tuple(conn.execute(sa.text(
                f"SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) "
                f'FROM public."{t}" r')).one()) for t in tables}
    finally:
        engine.dispose()


def sequence_values(url: str) -> dict[str, int | None]:
    """Last value of every sequence in schema public (what the next id is drawn from)."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text(
                "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'")).all())
    finally:
        engine.dispose()


def scalar(url: str, statement: str):
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(statement)).scalar()
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    engine = db.make_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def database_exists(url: str, name: str) -> bool:
    return scalar(url, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == 1


# -- fixtures -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source(settings: Settings, engine) -> Iterator[str]:
    """The suite's database (demo city) with accounts, a token, assigned kiosks, a login failure and an audit row,
    committed for this module and removed afterwards; yields its URL."""
    with engine.begin() as conn:
        kiosks = conn.execute(sa.text("SELECT id FROM point WHERE kind = 'kiosk' ORDER BY id LIMIT 2")).scalars().all()
        accounts.create_user(conn, username="bk_admin", display_name="备份管理员", role="admin",
                             password="a long password 1")
        accounts.create_user(conn, username="bk_staff", display_name="岗亭员", role="kiosk_staff",
                             password="a long password 2")
        accounts.assign_points(conn, "bk_staff", kiosks)
        accounts.create_token(conn, "bk_admin", name="nightly")
        conn.execute(sa.text("INSERT INTO login_failure (username, address) VALUES ('bk_admin', '192.0.2.7')"))
        conn.execute(sa.text(
            "INSERT INTO audit_log (username, role, table_name, feature_key, operation, after) "
            "VALUES ('bk_admin', 'admin', 'point', '1', 'update', '{\"name\": \"测试\"}')"))
    yield settings.database_url
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE username = 'bk_admin'"))
        conn.execute(sa.text("DELETE FROM login_failure WHERE username = 'bk_admin'"))
        conn.execute(sa.text("DELETE FROM app_user WHERE username IN ('bk_admin', 'bk_staff')"))


class Scratch:
    """The databases a test module makes beside the suite's (named ``<suite db>_bk_<label>``), dropped at its end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.names: list[str] = []
        # Those left by an interrupted earlier run.
        self.drop(*self._existing())

    def new(self, label: str) -> str:
        """A name for a database that does not exist yet, dropped at the module's end."""
        name = SCRATCH_PREFIX + label
        assert not database_exists(self.url, name)
        self.names.append(name)
        return name

    def drop(self, *names: str) -> None:
        for name in names:
            execute(self.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _existing(self) -> list[str]:
        engine = db.make_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, :p)"),
                                    {"p": SCRATCH_PREFIX}).scalars().all()
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def scratch(settings: Settings) -> Iterator[Scratch]:
    """Databases made by this module's tests."""
    made = Scratch(settings.database_url)
    yield made
    made.drop(*made.names)


@pytest.fixture(scope="module")
def backups(settings: Settings, source: str, tmp_path_factory) -> Settings:
    """Settings whose backup folder is this module's own."""
    return settings.replace(backup_dir=tmp_path_factory.mktemp("backups"), backup_keep=14)


@pytest.fixture(scope="module")
def made(backups: Settings) -> backup.Backup:
    """One backup of the source."""
    return backup.create(backups)


def embedded_suite() -> bool:
    return not (os.environ.get("GEOSERVICE_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL"))


def cli(settings: Settings, *args: str, database: str | None = None) -> subprocess.CompletedProcess[str]:
    """``geoservice ARGS`` as an administrator runs it: on the embedded cluster by database name (the way a
    one-machine install runs), else with DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GEOSERVICE_DB_NAME")}
    env["GEOSERVICE_BACKUP_DIR"] = str(settings.backup_dir)
    env["GEOSERVICE_BACKUP_KEEP"] = str(settings.backup_keep)
    name = database or make_url(settings.database_url).database
    if embedded_suite():
        env["GEOSERVICE_DB_NAME"] = name
    else:
        env["DATABASE_URL"] = with_database(settings.database_url, name)
    return subprocess.run([sys.executable, "-m", "geoservice", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geoservice: "), result.stderr
    assert "Traceback" not in result.stderr and "password" not in result.stderr.lower()
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- create and list ------------------------------------------------------------------------------------------------

def test_create_writes_the_dump_and_a_sidecar_that_describes_it(backups: Settings, made: backup.Backup,
                                                               source: str):
    dump = backups.backup_dir / f"{made.name}.dump"
    sidecar = json.loads((backups.backup_dir / f"{made.name}.json").read_text(encoding="utf-8"))
    assert made.name == "geoservice-" + made.created_at.strftime("%Y%m%dT%H%M%SZ")
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    assert sidecar["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    assert sidecar["size_bytes"] == dump.stat().st_size
    assert sidecar["schema_revision"] == db.head_revision() == scalar(source, "SELECT version_num FROM "
                                                                              "alembic_version")
    expected = {table: rows for table, (rows, _) in table_checksums(source).items()}
    assert sidecar["row_counts"] == expected
    assert set(catalogue.TABLES) | ACCOUNT_TABLES <= set(expected)
    assert all(expected[t] > 0 for t in ACCOUNT_TABLES)
    assert sidecar["database"] == TEST_DB_NAME
    # Password hashes are in it: readable by its owner only; no temporary file is left.
    assert {(p.name, p.stat().st_mode & 0o777) for p in backups.backup_dir.iterdir()} == {
        (f"{made.name}.dump", 0o600), (f"{made.name}.json", 0o600)}


def test_list_shows_complete_backups_only_newest_first(backups: Settings, made: backup.Backup, tmp_path: Path):
    folder = tmp_path / "listing"
    shutil.copytree(backups.backup_dir, folder)
    # An interrupted backup: a temporary dump, and a dump whose sidecar was never written.
    (folder / ".geoservice-20990101T000000Z.dump.partial").write_bytes(b"PGDMP")
    (folder / "geoservice-20990101T000001Z.dump").write_bytes(b"PGDMP")
    older = json.loads((folder / f"{made.name}.json").read_text(encoding="utf-8"))
    older.update(name="geoservice-20200101T000000Z", created_at="2020-01-01T00:00:00+00:00")
    shutil.copy(folder / f"{made.name}.dump", folder / "geoservice-20200101T000000Z.dump")
    (folder / "geoservice-20200101T000000Z.json").write_text(json.dumps(older), encoding="utf-8")
    listed = backup.list_backups(backups.replace(backup_dir=folder))
    assert [b.name for b in listed] == [made.name, "geoservice-20200101T000000Z"]
    result = cli(backups.replace(backup_dir=folder), "backup", "list")
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [made.name, "geoservice-20200101T000000Z"]
    assert "revision " + db.head_revision() in result.stdout.splitlines()[0]


def test_retention_keeps_the_newest(backups: Settings, tmp_path: Path):
    keeping = backups.replace(backup_dir=tmp_path / "kept", backup_keep=2)
    keeping.backup_dir.mkdir()
    # What a backup killed two days ago left, and one running now (another process's).
    abandoned, running = (keeping.backup_dir / ".geoservice-20200101T000000Z.dump.partial",
                          keeping.backup_dir / ".geoservice-20990101T000000Z.dump.partial")
    abandoned.write_bytes(b"PGDMP")
    running.write_bytes(b"PGDMP")
    os.utime(abandoned, (time.time() - 2 * 86400,) * 2)
    names = [backup.create(keeping).name for _ in range(3)]
    assert len(set(names)) == 3 and names == sorted(names)
    assert [b.name for b in backup.list_backups(keeping)] == names[:0:-1]
    assert sorted(p.name for p in keeping.backup_dir.iterdir()) == sorted(
        [running.name, *(f"{n}.{ext}" for n in names[1:] for ext in ("dump", "json"))])


# -- restore --------------------------------------------------------------------------------------------------------

def test_restore_into_a_new_database_gives_identical_rows(backups: Settings, made: backup.Backup, source: str,
                                                          scratch: Scratch):
    name = scratch.new("new")
    line = backup.restore(backups, made.name, into=name)
    restored = with_database(source, name)
    assert name in line and f"revision {db.head_revision()}" in line
    before, after = table_checksums(source), table_checksums(restored)
    assert set(before) >= set(catalogue.TABLES) | ACCOUNT_TABLES
    assert after == before
    assert sequence_values(restored) == sequence_values(source)
    # The web app's role reads it (its grants were applied after the restore).
    if embedded_suite():
        app_url = EmbeddedCluster(backups.replace(database_url=None)).app_url(name)
        assert scalar(app_url, "SELECT count(*) FROM point") == before["point"][0]


def test_restore_latest_from_the_command_line(backups: Settings, made: backup.Backup, source: str,
                                              scratch: Scratch):
    name = scratch.new("latest")
    created = cli(backups, "backup", "create")
    assert created.returncode == 0, created.stderr
    newest = created.stdout.split("\t")[0]
    assert newest > made.name and backup.list_backups(backups)[0].name == newest
    result = cli(backups, "backup", "restore", "latest", "--into", name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"restored {newest} ") and name in result.stdout
    assert table_checksums(with_database(source, name)) == table_checksums(source)
    if embedded_suite():  # made the embedded cluster's way: closed to PUBLIC, the app role may connect
        acl = scalar(source, f"SELECT datacl::text FROM pg_database WHERE datname = '{name}'")
        assert f"{db.APP_ROLE}=c/" in acl and "=Tc/" not in acl


def test_restore_replaces_the_current_database_only_with_yes(backups: Settings, made: backup.Backup, source: str,
                                                             scratch: Scratch):
    name = scratch.new("current")
    backup.restore(backups, made.name, into=name)
    current = with_database(source, name)
    execute(current, "DELETE FROM user_point", "DELETE FROM point WHERE id % 3 = 0",
            "UPDATE street SET name = 'x'", "CREATE TABLE stray (id int)")
    changed = table_checksums(current)
    refused = cli(backups, "backup", "restore", made.name, database=name)
    assert_one_line_error(refused, "--yes", name)
    assert table_checksums(current) == changed
    result = cli(backups, "backup", "restore", made.name, "--yes", database=name)
    assert result.returncode == 0, result.stderr
    assert table_checksums(current) == table_checksums(source)  # the stray table went with the old data
    assert not database_exists(source, f"{name}_restoring")


@pytest.mark.parametrize("args,fragments", [
    (("backup", "restore", "geoservice-20000101T000000Z", "--into", "x"), ("no backup geoservice-20000101T000000Z",)),
    (("backup", "restore", "latest", "--into", TEST_DB_NAME), (f"database {TEST_DB_NAME} already holds",)),
    (("backup", "restore", "latest", "--into", "no such;name"), ("--into",)),
], ids=["unknown name", "existing database", "bad name"])
def test_restore_refusals_are_one_line(backups: Settings, made: backup.Backup, args, fragments):
    assert_one_line_error(cli(backups, *args), *fragments)


def test_an_empty_backup_folder_has_no_latest(backups: Settings, tmp_path: Path):
    assert_one_line_error(cli(backups.replace(backup_dir=tmp_path), "backup", "restore", "latest", "--into", "x"),
                          "no backup in")


def copy_backup(item: backup.Backup, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    dump, sidecar = folder / item.path.name, folder / f"{item.name}.json"
    shutil.copy(item.path, dump)
    shutil.copy(item.path.with_suffix(".json"), sidecar)
    return dump, sidecar


def test_a_damaged_dump_is_refused(backups: Settings, made: backup.Backup, tmp_path: Path, source: str):
    dump, _ = copy_backup(made, tmp_path / "cut")
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    name = SCRATCH_PREFIX + "never_damaged"
    assert_one_line_error(cli(backups.replace(backup_dir=dump.parent), "backup", "restore", made.name, "--into",
                              name), f"backup {made.name} is damaged")
    assert not database_exists(source, name)


def test_a_backup_from_a_newer_schema_is_refused(backups: Settings, made: backup.Backup, tmp_path: Path,
                                                 source: str, scratch: Scratch):
    head = db.head_revision()
    never = SCRATCH_PREFIX + "never_newer"
    # A sidecar that says 9999.
    _, sidecar = copy_backup(made, tmp_path / "sidecar")
    content = json.loads(sidecar.read_text(encoding="utf-8"))
    sidecar.write_text(json.dumps({**content, "schema_revision": "9999"}), encoding="utf-8")
    assert_one_line_error(cli(backups.replace(backup_dir=sidecar.parent), "backup", "restore", "latest", "--into",
                              never), "schema revision 9999", f"newest ({head})")
    # A database at 9999 (made by a newer geoservice), backed up: refused by its sidecar, and by the dump itself
    # when the sidecar is changed back to this code's head.
    newer = scratch.new("newer")
    backup.restore(backups, made.name, into=newer)
    execute(with_database(source, newer), "UPDATE alembic_version SET version_num = '9999'")
    newer_backups = backups.replace(database_url=with_database(source, newer), backup_dir=tmp_path / "newer")
    item = backup.create(newer_backups)
    assert item.schema_revision == "9999"
    assert_one_line_error(cli(newer_backups, "backup", "restore", "latest", "--into", never),
                          "schema revision 9999", f"newest ({head})")
    sidecar = item.path.with_suffix(".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "schema_revision": head}), encoding="utf-8")
    assert_one_line_error(cli(newer_backups, "backup", "restore", "latest", "--into", never),
                          "schema revision 9999", f"newest ({head})")
    assert not database_exists(source, never)


def test_an_older_backup_is_migrated_to_this_codes_schema(backups: Settings, made: backup.Backup, source: str,
                                                          scratch: Scratch, tmp_path: Path):
    from alembic import command
    from alembic.config import Config

    order = backup.revision_order()
    previous = order[-2]
    older = scratch.new("older")
    backup.restore(backups, made.name, into=older)
    older_url = with_database(source, older)
    engine = db.make_engine(older_url)
    with engine.connect() as conn:
        config = Config()
        config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
        config.attributes["connection"] = conn
        command.downgrade(config, previous)
    engine.dispose()
    older_backups = backups.replace(database_url=older_url, backup_dir=tmp_path / "older")
    item = backup.create(older_backups)
    assert item.schema_revision == previous
    migrated = scratch.new("migrated")
    line = backup.restore(older_backups, item.name, into=migrated)
    assert f"revision {order[-1]}, migrated from {previous}" in line
    migrated_url = with_database(source, migrated)
    assert scalar(migrated_url, "SELECT version_num FROM alembic_version") == order[-1]
    # The newest migration's objects exist (0005: the nearest search's indexes), and every row is the backup's.
    assert scalar(migrated_url, "SELECT count(*) FROM pg_indexes WHERE indexname IN "
                                "('point_kind_geom_idx', 'point_hours_geom_idx')") == 2
    before, after = table_checksums(older_url), table_checksums(migrated_url)
    assert {t: v for t, v in after.items() if t != "alembic_version"} == \
        {t: v for t, v in before.items() if t != "alembic_version"}


# -- the nightly timer (deploy/) ----------------------------------------------------------------------------------

DEPLOY = ROOT / "deploy"


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return parser


def test_the_nightly_timer_runs_backup_create_as_the_service_user(backups: Settings, tmp_path: Path):
    service, timer = unit(DEPLOY / "geoservice-backup.service"), unit(DEPLOY / "geoservice-backup.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert (service["Service"]["User"], service["Service"]["Group"]) == ("geoservice", "geoservice")
    assert service["Service"]["EnvironmentFile"] == "/etc/geoservice/geoservice.env"
    program, *args = shlex.split(service["Service"]["ExecStart"])
    assert program.endswith("/bin/geoservice") and args == ["backup", "create"]
    # The settings file's backup folder is one the unit may write.
    settings_file = (DEPLOY / "geoservice.env").read_text(encoding="utf-8")
    folder = Path(re.search(r"^GEOSERVICE_BACKUP_DIR=(\S+)$", settings_file, re.MULTILINE).group(1))
    writable = [Path(p) for p in service["Service"]["ReadWritePaths"].split()]
    assert any(folder.is_relative_to(p) for p in writable), (folder, writable)
    assert service["Service"]["UMask"] == "0077"
    # Every night, caught up after a night the machine was off, starting that service.
    assert timer["Timer"]["Unit"] == "geoservice-backup.service"
    assert timer["Timer"]["Persistent"] == "true" and timer["Install"]["WantedBy"] == "timers.target"
    calendar = subprocess.run(["systemd-analyze", "calendar", "--iterations=3", timer["Timer"]["OnCalendar"]],
                              capture_output=True, text=True, check=True).stdout
    elapses = [datetime.strptime(" ".join(m.split()[1:3]), "%Y-%m-%d %H:%M:%S")
               for m in re.findall(r"(?:Next elapse|Iter\. #\d): (.+?) \w+$", calendar, re.MULTILINE)]
    assert len(elapses) == 3
    assert {later - earlier for earlier, later in itertools.pairwise(elapses)} == {timedelta(days=1)}
    # systemd accepts both (with the program where this checkout has it), and the command runs.
    here = Path(sys.executable).parent / "geoservice"
    for name in ("geoservice-backup.service", "geoservice-backup.timer"):
        text = (DEPLOY / name).read_text(encoding="utf-8").replace(program, str(here))
        (tmp_path / name).write_text(text, encoding="utf-8")
    verify = subprocess.run(["systemd-analyze", "verify", "geoservice-backup.service", "geoservice-backup.timer"],
                            capture_output=True, text=True, cwd=tmp_path, check=False)
    assert verify.returncode == 0, verify.stderr
    nightly = backups.replace(backup_dir=tmp_path / "nightly")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    ran = subprocess.run([str(here), *args], capture_output=True, text=True, cwd=ROOT, check=False, env={
        **env, "DATABASE_URL": backups.database_url, "GEOSERVICE_BACKUP_DIR": str(nightly.backup_dir)})
    assert ran.returncode == 0, ran.stderr
    assert [b.name for b in backup.list_backups(nightly)] == [ran.stdout.split("\t")[0]]
