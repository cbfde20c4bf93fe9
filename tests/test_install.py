"""The README's "Deploying" block, command by command, on this machine.

Each line of the block is in ``EXERCISED`` with the way this file runs it. Commands that change the system (a user,
files under /etc, enabled units) run into a scratch root: ``DESTDIR=… deploy/install.sh`` (the user is made with
``useradd --prefix`` there) and ``systemctl --root=… enable``, which sets up the same links systemd would; systemd
itself is not PID 1 here, so what each unit then starts is run from its ``ExecStart`` by tests/test_https.py (the app
processes, Caddy's command), tests/test_deploy.py (the embedded cluster's unit) and tests/test_backup.py (the backup
unit). The ``geoservice`` lines run through the installed server command (deploy/geoservice) with the installed
settings file, edited as an administrator would, on the suite's database.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from geoservice import deploy
from geoservice.config import load_settings
from tests.proxy import CADDY, ROOT, read_settings_file, unit_directives

README = (ROOT / "README.md").read_text(encoding="utf-8")
PUBLIC = "https://map.geoservice.test"

EXERCISED = {
    "apt-get update && apt-get install -y git make caddy": "apt-get install of the same packages, without download",
    "git clone https://git.city.gov.cn/geoservice.git /opt/geoservice && cd /opt/geoservice":
        "git clone of this checkout",
    "make system-run venv assets": "make --dry-run of the targets in the clone (make test runs them for real)",
    "deploy/install.sh": "DESTDIR=scratch root, from the clone, twice",
    "editor /etc/geoservice/geoservice.env": "the same settings changed in the installed file",
    "systemctl enable --now geoservice-db": "systemctl --root=scratch root enable",
    "geoservice demo load --if-empty": "the installed geoservice command",
    "systemctl enable --now geoservice@8001 geoservice@8002 geoservice-backup.timer":
        "systemctl --root=scratch root enable",
    "systemctl restart caddy": "caddy validate with the drop-in's command line and the installed settings file",
    "geoservice backup create": "the installed geoservice command",
    "geoservice deploy check": "the installed geoservice command",
}


def deploying_block() -> list[str]:
    section = README.split("\n## Deploying\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_every_command_of_the_deploying_block_is_run_here():
    assert deploying_block() == list(EXERCISED)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The repository as `git clone` gives it (what is committed, nothing of this working tree)."""
    target = tmp_path_factory.mktemp("opt") / "geoservice"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(target)], check=True)
    return target


@pytest.fixture(scope="module")
def destdir(tmp_path_factory, clone) -> Path:
    """A scratch root with this machine's user database, deploy/install.sh run into it once."""
    root = tmp_path_factory.mktemp("root")
    (root / "etc").mkdir()
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).write_bytes(Path("/etc", name).read_bytes())
    install(clone, root)
    return root


def install(clone: Path, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(clone / "deploy" / "install.sh")], env={**os.environ, "DESTDIR": str(root)},
                          check=True, capture_output=True, text=True)


def test_the_packages_are_those_debian_has_installed():
    run = subprocess.run(["apt-get", "install", "-y", "--no-download", "git", "make", "caddy"], check=False,
                         capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    assert run.returncode == 0, run.stderr
    assert "0 newly installed" in run.stdout


def test_the_clone_has_the_make_targets(clone):
    run = subprocess.run(["make", "--dry-run", "system-run", "venv", "assets"], cwd=clone, check=False,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "npm install" in run.stdout and "pip install" in run.stdout


def test_install_outside_opt_is_refused_without_a_destdir(clone):
    run = subprocess.run([str(clone / "deploy" / "install.sh")], check=False, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "DESTDIR"})
    assert run.returncode == 1
    assert run.stderr.strip() == ("install: the units run /opt/geoservice/.venv/bin/geoservice; clone to "
                                  f"/opt/geoservice (this is {clone})")


def test_install_makes_the_user_the_settings_file_and_the_units(destdir, clone):
    passwd = {line.split(":")[0]: line.split(":") for line in (destdir / "etc/passwd").read_text().splitlines()}
    user = passwd["geoservice"]
    assert user[5:] == ["/var/lib/geoservice", "/usr/sbin/nologin"]
    assert int(user[2]) < 1000  # a system user
    gid = int(user[3])
    home = destdir / "var/lib/geoservice"
    assert (home.stat().st_uid, home.stat().st_gid, stat.S_IMODE(home.stat().st_mode)) == (int(user[2]), gid, 0o750)
    assert stat.S_IMODE((home / "backups").stat().st_mode) == 0o700

    settings_file = destdir / "etc/geoservice/geoservice.env"
    info = settings_file.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, gid, 0o640)
    # The settings file is deploy's, with a new session key the production app takes.
    values = read_settings_file(settings_file)
    assert values == {**read_settings_file(clone / "deploy/geoservice.env"),
                      "GEOSERVICE_SECRET_KEY": values["GEOSERVICE_SECRET_KEY"]}
    settings = load_settings(env=values)
    assert deploy.check_secret_key(settings).level == "ok"
    assert settings.env == "production"

    for installed, source in [("usr/local/bin/geoservice", "geoservice"),
                              ("etc/systemd/system/geoservice@.service", "geoservice@.service"),
                              ("etc/systemd/system/geoservice-db.service", "geoservice-db.service"),
                              ("etc/systemd/system/geoservice-backup.service", "geoservice-backup.service"),
                              ("etc/systemd/system/geoservice-backup.timer", "geoservice-backup.timer"),
                              ("etc/systemd/system/caddy.service.d/geoservice.conf", "caddy.service.d/geoservice.conf"),
                              ("etc/caddy/Caddyfile", "Caddyfile"),
                              ("etc/logrotate.d/geoservice", "logrotate")]:
        assert (destdir / installed).read_bytes() == (clone / "deploy" / source).read_bytes(), installed
    assert os.access(destdir / "usr/local/bin/geoservice", os.X_OK)


def test_install_again_keeps_the_settings_file_and_the_user(destdir, clone):
    settings_file = destdir / "etc/geoservice/geoservice.env"
    edited = settings_file.read_text() + "GEOSERVICE_BACKUP_KEEP=30\n"
    settings_file.write_text(edited)
    users = (destdir / "etc/passwd").read_text()
    run = install(clone, destdir)
    assert "install: kept /etc/geoservice/geoservice.env" in run.stdout
    assert settings_file.read_text() == edited
    assert (destdir / "etc/passwd").read_text() == users


def test_enabling_the_units_wires_them_to_boot(destdir):
    for line in deploying_block():
        if line.startswith("systemctl enable --now "):
            units = line.split()[3:]
            subprocess.run(["systemctl", f"--root={destdir}", "enable", *units], check=True, capture_output=True)
    wants = destdir / "etc/systemd/system"
    for link, target in [("multi-user.target.wants/geoservice-db.service", "geoservice-db.service"),
                         ("multi-user.target.wants/geoservice@8001.service", "geoservice@.service"),
                         ("multi-user.target.wants/geoservice@8002.service", "geoservice@.service"),
                         ("timers.target.wants/geoservice-backup.timer", "geoservice-backup.timer")]:
        assert os.readlink(wants / link) == f"/etc/systemd/system/{target}"


def test_caddy_restarts_on_the_installed_caddyfile_and_settings(destdir, tmp_path):
    # the drop-in's last ExecStart= is the one systemd runs (an empty one before it clears Debian's)
    argv = unit_directives(destdir / "etc/systemd/system/caddy.service.d/geoservice.conf")["Service"][
        "ExecStart"][-1].split()
    assert argv[:2] == [CADDY, "run"] and argv[argv.index("--config") + 1] == "/etc/caddy/Caddyfile"
    argv[argv.index("--config") + 1] = str(destdir / "etc/caddy/Caddyfile")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"),
           **read_settings_file(destdir / "etc/geoservice/geoservice.env"),
           "GEOSERVICE_ACCESS_LOG": str(tmp_path / "access.log"), "GEOSERVICE_CADDY_ADMIN": "off"}
    run = subprocess.run([CADDY, "validate", *argv[2:]], check=False, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_geoservice_lines_run_through_the_installed_command(destdir, settings, app_database_url, tmp_path):
    # The administrator's edit, and the suite's database in place of the server's.
    settings_file = destdir / "etc/geoservice/geoservice.env"
    backups = tmp_path / "backups"
    text = settings_file.read_text()
    for key, value in [("GEOSERVICE_PUBLIC_URL", PUBLIC), ("GEOSERVICE_TRUSTED_HOSTS", "map.geoservice.test"),
                       ("GEOSERVICE_BACKUP_DIR", str(backups))]:
        text, count = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.MULTILINE)
        assert count == 1, key
    settings_file.write_text(text + f"DATABASE_URL='{settings.database_url}'\n"
                             f"GEOSERVICE_APP_DATABASE_URL='{app_database_url}'\n")
    os.chmod(tmp_path, 0o755)
    env = {"PATH": os.environ["PATH"], "GEOSERVICE_SETTINGS_FILE": str(settings_file),
           "GEOSERVICE_HOME": str(tmp_path), "GEOSERVICE_PROGRAM": str(Path(sys.executable).parent / "geoservice"),
           # A server's is the geoservice user; this machine's Python lives under /root, which no other user may
           # enter, so the switch is to root itself here.
           "GEOSERVICE_USER": "root"}
    command = str(destdir / "usr/local/bin/geoservice")
    runs = {}
    for line in deploying_block():
        if line.startswith("geoservice "):
            runs[line] = subprocess.run([command, *line.split()[1:]], check=False, env=env, capture_output=True,
                                        text=True)
    assert list(runs) == ["geoservice demo load --if-empty", "geoservice backup create", "geoservice deploy check"]
    for line, run in runs.items():
        assert run.returncode == 0, (line, run.stdout, run.stderr)
    (dump,) = backups.glob("geoservice-*.dump")
    assert runs["geoservice backup create"].stdout.startswith(dump.stem + "\t")
    checked = runs["geoservice deploy check"].stdout.splitlines()
    assert checked and all(line.startswith(("ok", "warn")) for line in checked), checked
    assert f"ok    served at {PUBLIC}" in checked
