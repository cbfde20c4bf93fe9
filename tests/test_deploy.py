"""``geoservice deploy check`` on a ready deployment and on each thing that makes one unsafe, and the files of
``deploy/`` checked as their programs read them (``systemd-analyze verify``, ``caddy validate``, ``logrotate``).

The ready deployment is the suite's database (embedded cluster, on 127.0.0.1, the app as ``geoservice_app``) with
production settings and a real backup (``geoservice.backup.create``); each bad case changes one thing and must
give exactly the expected findings. The database's exposure is checked on a cluster of the test's own that
listens on every address, with ``pg_hba.conf`` lines written by the test.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from geoservice import backup, deploy
from geoservice.config import load_settings
from geoservice.db.embedded import EmbeddedCluster
from tests.proxy import (
    CADDY,
    DEPLOY,
    INSTALLED_PROGRAM,
    ROOT,
    read_settings_file,
    unit_command,
    unit_directives,
)

PUBLIC = "https://map.city.gov.cn"
SETTINGS_FILE = "/etc/geoservice/geoservice.env"
EXPOSED_PORT = 56250
UNITS = ("geoservice@.service", "geoservice-db.service")


@pytest.fixture(scope="module")
def backups(tmp_path_factory, app_settings):
    """A folder holding one real backup of the suite's database, just made."""
    folder = tmp_path_factory.mktemp("backups")
    backup.create(app_settings.replace(backup_dir=folder))
    return folder


@pytest.fixture(scope="module")
def ready(app_settings, backups):
    """The settings of a deployment ready to serve."""
    return app_settings.replace(env="production", secret_key=secrets.token_urlsafe(48), public_url=PUBLIC,
                                trusted_proxies=1, trusted_hosts=("map.city.gov.cn",), backup_dir=backups)


def not_ok(findings) -> list[tuple[str, str]]:
    return [(f.level, f.message) for f in findings if f.level != "ok"]


def test_a_ready_deployment_is_all_ok(ready):
    findings = deploy.check(ready)
    assert not_ok(findings) == []
    messages = "\n".join(str(f) for f in findings)
    assert "the web app connects as geoservice_app" in messages
    assert "listens on this machine only (listen_addresses = '127.0.0.1')" in messages
    assert f"served at {PUBLIC}" in messages
    assert all(str(f).startswith("ok    ") for f in findings)


def test_the_command_says_ok_and_exits_0_then_fails_with_1(ready, settings, app_database_url):
    env = {**os.environ, "GEOSERVICE_ENV": "production", "GEOSERVICE_SECRET_KEY": ready.secret_key,
           "GEOSERVICE_PUBLIC_URL": PUBLIC, "GEOSERVICE_TRUSTED_PROXIES": "1",
           "GEOSERVICE_TRUSTED_HOSTS": "map.city.gov.cn", "GEOSERVICE_BACKUP_DIR": str(ready.backup_dir),
           "DATABASE_URL": settings.database_url, "GEOSERVICE_APP_DATABASE_URL": app_database_url}
    command = [sys.executable, "-m", "geoservice", "deploy", "check"]
    run = subprocess.run(command, check=False, env=env, capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert [line[:4] for line in run.stdout.splitlines()] == ["ok  "] * 8
    run = subprocess.run(command, check=False,
                         env={**env, "GEOSERVICE_PUBLIC_URL": "http://map.city.gov.cn"}, capture_output=True,
                         text=True, cwd=ROOT)
    assert run.returncode == 1
    assert [line for line in run.stdout.splitlines() if not line.startswith("ok")] == [
        "fail  GEOSERVICE_PUBLIC_URL is http://map.city.gov.cn: plain HTTP — browsers give the farmer page no "
        "location and logins travel in clear; use https://"]


UNREACHABLE = f"postgresql://geoservice:hunter2-not-shown@127.0.0.1:{EXPOSED_PORT + 1}/geoservice"


@pytest.mark.parametrize("changes,expected", [
    ({"env": "development"}, [("fail", "GEOSERVICE_ENV is development")]),
    ({"secret_key": None}, [("fail", "GEOSERVICE_SECRET_KEY must be set in production")]),
    ({"secret_key": "Kq7-short-but-random"}, [("fail", "is 20 characters long, shorter than 32")]),
    ({"secret_key": "change-me-please-change-me-please-1234"}, [("fail", "looks like an example")]),
    ({"public_url": "http://map.city.gov.cn"}, [("fail", "plain HTTP")]),
    ({"public_url": None}, [("fail", "GEOSERVICE_PUBLIC_URL is not set"), ("fail", "no public host name")]),
    ({"trusted_proxies": 0}, [("fail", "GEOSERVICE_TRUSTED_PROXIES is 0")]),
    ({"trusted_proxies": 2}, [("fail", "GEOSERVICE_TRUSTED_PROXIES is 2 but one proxy")]),
    ({"trusted_hosts": ()}, [("fail", "map.city.gov.cn is not in GEOSERVICE_TRUSTED_HOSTS")]),
    ({"trusted_hosts": ("map.city.gov",)}, [("fail", "map.city.gov.cn is not in GEOSERVICE_TRUSTED_HOSTS")]),
    ({"trusted_hosts": (".city.gov.cn",)}, []),
    ({"app_database_url": "OWNER"}, [("fail", "the web app connects as geoservice, a superuser")]),
    ({"database_url": UNREACHABLE}, [("fail", f"127.0.0.1:{EXPOSED_PORT + 1}/geoservice not reachable")]),
    ({"replica_urls": (UNREACHABLE.replace("geoservice:", "geoservice_app:"),)},
     [("warn", f"replica 127.0.0.1:{EXPOSED_PORT + 1}/geoservice not reachable")]),
    ({"replica_urls": ("APP",)}, [("warn", "is not in recovery (promoted?)")]),
])
def test_each_unsafe_setting_is_one_finding(ready, changes, expected):
    stand_ins = {"OWNER": ready.database_url, "APP": ready.app_database_url}
    changes = {k: stand_ins.get(v, v) if isinstance(v, str) else v for k, v in changes.items()}
    if "replica_urls" in changes:
        changes["replica_urls"] = tuple(stand_ins.get(u, u) for u in changes["replica_urls"])
    findings = deploy.check(ready.replace(**changes))
    found = not_ok(findings)
    assert [level for level, _ in found] == [level for level, _ in expected], found
    for (_, message), (_, part) in zip(found, expected, strict=True):
        assert part in message
        assert "hunter2" not in message and "\n" not in message
    assert any(f.blocking for f in findings) == any(level == "fail" for level, _ in expected)


def test_no_backup_and_an_old_backup_are_findings(ready, tmp_path):
    empty = tmp_path / "none"
    assert not_ok(deploy.check(ready.replace(backup_dir=empty))) == [
        ("fail", f"no backup in {empty}: run 'geoservice backup create' and enable geoservice-backup.timer")]

    # The ready folder's backup, as if taken three days ago (its sidecar's time and its name say so).
    old = tmp_path / "old"
    old.mkdir()
    (made,) = backup.list_backups(ready)
    then = datetime.now(UTC) - timedelta(days=3)
    name = f"geoservice-{then:%Y%m%dT%H%M%SZ}"
    shutil.copy(made.path, old / f"{name}.dump")
    sidecar = json.loads(made.path.with_suffix(".json").read_text())
    (old / f"{name}.json").write_text(json.dumps({**sidecar, "created_at": then.isoformat()}))
    assert not_ok(deploy.check(ready.replace(backup_dir=old))) == [
        ("fail", f"the newest backup, {name}, is 3 days old (more than 26 h): is geoservice-backup.timer running? "
                 "(systemctl list-timers geoservice-backup)")]


# -- the database reachable from other machines ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exposed(tmp_path_factory, base_settings):
    """An embedded cluster of the test's own, restarted to listen on every address; yields (cluster, hba file)."""
    settings = base_settings.replace(pg_dir=tmp_path_factory.mktemp("exposed") / "pg", pg_port=EXPOSED_PORT,
                                     database_url=None)
    cluster = EmbeddedCluster(settings)
    cluster.up()
    pg_ctl = [str(settings.pg_bin / "pg_ctl"), "restart", "-D", str(cluster.data_dir), "-l", str(cluster.log_file),
              "-w", "-m", "fast", "-o", f"-p {EXPOSED_PORT} -k {cluster.socket_dir} -h '*'"]
    as_owner = ["runuser", "-u", settings.pg_os_user, "--"] if os.geteuid() == 0 else []
    subprocess.run(as_owner + pg_ctl, check=True, capture_output=True)
    hba = cluster.data_dir / "pg_hba.conf"
    original = hba.read_text()
    try:
        yield cluster, hba
    finally:
        hba.write_text(original)
        cluster.down()


def exposure(url: str, *, embedded: bool):
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        return deploy.check_exposure(conn, embedded=embedded)


def test_a_database_listening_on_every_address(exposed):
    cluster, hba = exposed
    owner = cluster.url()
    found = exposure(owner, embedded=True)
    assert (found.level, found.message) == (
        "fail", "the embedded database listens on '*': reachable from other machines; set listen_addresses = "
                "'127.0.0.1' in its postgresql.conf (use an external server for other machines)")

    # As an external server: initdb's own rules admit this machine only.
    found = exposure(owner, embedded=False)
    assert (found.level, found.message) == (
        "ok", "the database listens on '*'; pg_hba.conf admits only listed addresses")

    original = hba.read_text()
    for line, verdict in [
        ("host all all 0.0.0.0/0 scram-sha-256", "admits every address (host all all 0.0.0.0/0.0.0.0 scram-sha-256)"),
        ("host geoservice all all scram-sha-256", "admits every address (host geoservice all all scram-sha-256)"),
        ("host all all 10.20.0.0/16 trust",
         "trusts another machine without a password (host all all 10.20.0.0/255.255.0.0 trust)"),
    ]:
        hba.write_text(original + line + "\n")
        number = len((original + line).splitlines())
        found = exposure(owner, embedded=False)
        assert (found.level, found.message) == (
            "fail", f"the database listens on '*' and pg_hba.conf line {number} {verdict}; list only the app "
                    "servers' addresses, with scram-sha-256")
    hba.write_text(original + "host geoservice geoservice_app 10.20.0.0/16 scram-sha-256\n")
    assert exposure(owner, embedded=False).level == "ok"

    # The app's role cannot read the rules: a warning, not a guess.
    found = exposure(cluster.app_url(), embedded=False)
    assert (found.level, found.message) == (
        "warn", "the database listens on '*' and its pg_hba.conf cannot be read by this role: make sure it "
                "admits only the app servers' addresses")


# -- the files of deploy/ ----------------------------------------------------------------------------------------------

def installed_copy(folder: Path) -> Path:
    """The units and drop-in as installed, their paths moved to this checkout and ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "home").mkdir(exist_ok=True)
    shutil.copy(DEPLOY / "geoservice.env", folder / "geoservice.env")
    swaps = {INSTALLED_PROGRAM: str(Path(sys.executable).parent / "geoservice"), SETTINGS_FILE:
             str(folder / "geoservice.env"), "/var/lib/geoservice": str(folder / "home")}
    for name in (*UNITS, "caddy.service.d/geoservice.conf"):
        text = (DEPLOY / name).read_text()
        for old, new in swaps.items():
            text = text.replace(old, new)
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(text)
    shutil.copy("/lib/systemd/system/caddy.service", folder / "caddy.service")
    (folder / "geoservice@8001.service").symlink_to("geoservice@.service")
    return folder


def verify(folder: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", *units], check=False, capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{folder}:"})


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    folder = installed_copy(tmp_path / "units")
    run = verify(folder, "geoservice@8001.service", "geoservice-db.service", "caddy.service")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    # verify does check here: a second ExecStart in the drop-in is refused
    with open(folder / "caddy.service.d/geoservice.conf", "a") as conf:
        conf.write("ExecStart=/usr/bin/caddy version\n")
    assert "more than one ExecStart" in verify(folder, "caddy.service").stderr


def test_the_units_and_the_settings_file_agree():
    settings_file = read_settings_file()
    app, database = (unit_directives(DEPLOY / name) for name in UNITS)
    caddy = unit_directives(DEPLOY / "caddy.service.d" / "geoservice.conf")
    for unit in (app, database, caddy):
        assert unit["Service"]["EnvironmentFile"] == [SETTINGS_FILE]
    for unit in (app, database):
        assert unit["Service"]["User"] == ["geoservice"] and unit["Service"]["Restart"] == ["on-failure"]
        assert unit["Service"]["WorkingDirectory"] == ["/var/lib/geoservice"]
        assert unit["Service"]["ReadWritePaths"] == ["/var/lib/geoservice"]
    assert unit_command(DEPLOY / "geoservice@.service", "8001", program="geoservice") == [
        "geoservice", "serve", "--host", "127.0.0.1", "--port", "8001", "--workers", "2"]
    assert unit_command(DEPLOY / "geoservice-db.service", program="geoservice") == ["geoservice", "db", "up"]
    assert database["Service"]["ExecStop"] == [f"{INSTALLED_PROGRAM} db down"]
    assert "geoservice-db.service" in app["Unit"]["After"][0].split()
    # The cluster's pid file and log are where the settings file puts the cluster.
    cluster = EmbeddedCluster(load_settings(env=settings_file))
    assert database["Service"]["PIDFile"] == [str(cluster.data_dir / "postmaster.pid")]
    assert str(cluster.log_file) in (DEPLOY / "logrotate").read_text()
    # Caddy balances over exactly the app units' loopback ports, and prints no environment (the session key).
    upstreams = settings_file["GEOSERVICE_UPSTREAMS"].split()
    assert upstreams and all(u.startswith("127.0.0.1:") and u.split(":")[1].isdigit() for u in upstreams)
    assert "--environ" not in caddy["Service"]["ExecStart"][0]


def test_the_settings_file_passes_every_settings_check_but_the_key_to_make():
    settings = load_settings(env=read_settings_file())
    findings = [deploy.check_environment(settings), deploy.check_secret_key(settings),
                deploy.check_public_url(settings), deploy.check_trusted_proxies(settings),
                deploy.check_trusted_hosts(settings)]
    assert [f.level for f in findings] == ["ok", "fail", "ok", "ok", "ok"]
    assert "GEOSERVICE_SECRET_KEY must be set in production" in findings[1].message
    # The command in its comment makes a key the app takes.
    made = subprocess.run(["python3", "-c", "import secrets; print(secrets.token_urlsafe(48))"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert "print(secrets.token_urlsafe(48))" in (DEPLOY / "geoservice.env").read_text()
    assert deploy.check_secret_key(settings.replace(secret_key=made)).level == "ok"


def test_caddy_validates_the_caddyfile_with_the_settings_file(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), **read_settings_file(),
           "GEOSERVICE_ACCESS_LOG": str(tmp_path / "access.log"), "GEOSERVICE_CADDY_ADMIN": "off"}
    run = subprocess.run([CADDY, "validate", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
                         check=False, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    adapted = json.loads(subprocess.run([CADDY, "adapt", "--config", str(DEPLOY / "Caddyfile")], env=env,
                                        capture_output=True, text=True, check=True).stdout)
    server = adapted["apps"]["http"]["servers"]["srv0"]
    assert server["listen"] == [":443"]
    (route,) = server["routes"]
    assert route["match"] == [{"host": ["map.city.gov.cn"]}]
    handlers = {h["handler"]: h for h in route["handle"][0]["routes"][0]["handle"]}
    proxy = handlers["reverse_proxy"]
    assert [u["dial"] for u in proxy["upstreams"]] == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert proxy["load_balancing"]["try_duration"] > 0 and proxy["health_checks"]["passive"]["max_fails"] == 1
    assert handlers["request_body"]["max_size"] == 2_000_000
    assert adapted["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False


def test_logrotate_reads_the_rotation_and_rotates_the_log(tmp_path):
    log = tmp_path / "pg" / "log" / "postgres.log"
    log.parent.mkdir(parents=True)
    log.write_text("line\n" * 1000)
    config = tmp_path / "logrotate.conf"
    config.write_text((DEPLOY / "logrotate").read_text().replace("/var/lib/geoservice/pg/log/postgres.log", str(log))
                      .replace("su geoservice geoservice", "su root root"))
    run = subprocess.run(["logrotate", "--force", "--state", str(tmp_path / "state"), str(config)],
                         check=False, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert log.read_text() == ""  # copytruncate: the same file, emptied, still the one PostgreSQL appends to
    assert (log.parent / "postgres.log.1").read_text() == "line\n" * 1000


def test_the_server_command_runs_with_the_settings_file(tmp_path, ready, settings,
                                                                             app_database_url):
    settings_file = tmp_path / "geoservice.env"
    settings_file.write_text((DEPLOY / "geoservice.env").read_text() + "\n".join([
        f"GEOSERVICE_SECRET_KEY={ready.secret_key}",
        f"DATABASE_URL='{settings.database_url}'",
        f"GEOSERVICE_APP_DATABASE_URL='{app_database_url}'",
        f"GEOSERVICE_BACKUP_DIR={tmp_path / 'nothing'}", ""]))
    os.chmod(tmp_path, 0o755)
    env = {"PATH": os.environ["PATH"], "GEOSERVICE_SETTINGS_FILE": str(settings_file),
           "GEOSERVICE_HOME": str(tmp_path), "GEOSERVICE_PROGRAM": str(Path(sys.executable).parent / "geoservice"),
           # A server's is the geoservice user; this machine's Python lives under /root, which no other user may
           # enter, so the switch is to root itself here.
           "GEOSERVICE_USER": "root"}
    run = subprocess.run([str(DEPLOY / "geoservice"), "deploy", "check"], check=False, env=env, capture_output=True,
                         text=True)
    lines = run.stdout.splitlines()
    assert run.returncode == 1, run.stderr
    assert [line for line in lines if not line.startswith("ok")] == [
        f"fail  no backup in {tmp_path / 'nothing'}: run 'geoservice backup create' and enable "
        "geoservice-backup.timer"]
    assert "ok    served at https://map.city.gov.cn" in lines


def test_the_database_unit_starts_and_stops_the_embedded_cluster(tmp_path, base_settings):
    # Type=forking: ExecStart returns once the cluster is up and migrated, leaving postgres running with its pid in
    # the PIDFile; ExecStop stops it.
    (pid_file,) = unit_directives(DEPLOY / "geoservice-db.service")["Service"]["PIDFile"]
    pg_dir = tmp_path / "pg"
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **read_settings_file(), "GEOSERVICE_PG_DIR": str(pg_dir),
           "GEOSERVICE_PG_PORT": str(EXPOSED_PORT + 2)}
    start = subprocess.run(unit_command(DEPLOY / "geoservice-db.service"), env=env, cwd=tmp_path, check=False,
                           capture_output=True, text=True, timeout=600)
    assert start.returncode == 0, start.stderr
    try:
        pid_path = pg_dir / Path(pid_file).relative_to("/var/lib/geoservice/pg")
        pid = int(pid_path.read_text().splitlines()[0])
        assert b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
        settings = load_settings(env=env)
        engine = sa.create_engine(EmbeddedCluster(settings).url(), poolclass=NullPool)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        stop_line = unit_directives(DEPLOY / "geoservice-db.service")["Service"]["ExecStop"][0]
        stop = [str(Path(sys.executable).parent / "geoservice") if a == INSTALLED_PROGRAM else a
                for a in stop_line.split()]
        subprocess.run(stop, env=env, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    assert not pid_path.exists()
