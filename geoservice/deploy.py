"""``geoservice deploy check``: what is missing or unsafe before a deployment serves the public.

Each finding is one line with a level: ``ok``, ``warn`` (worth a look, the service is safe) or ``fail`` (unsafe or
broken: the command exits 1). What is checked, with the settings of the server it runs on (``deploy/geoservice``
runs it with the settings file):

- ``GEOSERVICE_ENV`` is ``production`` (Secure cookies, a session key required);
- the session key is set, long and not an example (the rule the app itself refuses to start on);
- ``GEOSERVICE_PUBLIC_URL`` is set and ``https://``;
- ``GEOSERVICE_TRUSTED_PROXIES`` is exactly 1, the one Caddy of ``deploy/Caddyfile`` (0: links, redirects and
  cookies would say ``http://``; 2 or more: the app would look for a second proxy's headers that never come);
- the public host name is one the app answers to (``GEOSERVICE_TRUSTED_HOSTS``);
- the database is reachable, and not from everywhere: the embedded cluster must listen on loopback only; an
  external server listening beyond it must not admit every address, nor ``trust`` a remote one, in its
  ``pg_hba.conf`` (read when the owner may read it: a superuser);
- the web app connects as a role that is neither a superuser nor the tables' owner;
- a backup newer than 26 hours is in ``GEOSERVICE_BACKUP_DIR`` (a daily timer, with two hours' slack);
- every read replica answers and is in recovery.

Nothing here changes anything, and no message holds a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

from geoservice import db
from geoservice.config import Settings
from geoservice.errors import ConfigError, GeoserviceError

LEVELS = ("ok", "warn", "fail")
BACKUP_MAX_AGE = timedelta(hours=26)
CONNECT_TIMEOUT_S = 5
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", ""})
"""``listen_addresses`` values that admit this machine only (empty: the Unix socket only)."""
PROXIES_IN_FRONT = 1
"""The one Caddy of deploy/Caddyfile."""


@dataclass(frozen=True)
class Finding:
    """One line of ``deploy check``: its level (``ok``, ``warn``, ``fail``) and what was found."""

    level: str
    message: str

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")

    @property
    def blocking(self) -> bool:
        """True when the deployment must not serve the public like this."""
        return self.level == "fail"

    def __str__(self) -> str:
        return f"{self.level:<4}  {self.message}"


def check(settings: Settings) -> list[Finding]:
    """Every finding about the deployment described by ``settings``, in the order of the module docstring.

    Args:
        settings: the server's settings (as the units run with them).

    Returns:
        The findings; any with ``blocking`` means the deployment is not ready.
    """
    return [
        check_environment(settings),
        check_secret_key(settings),
        check_public_url(settings),
        check_trusted_proxies(settings),
        check_trusted_hosts(settings),
        *check_database(settings),
        check_backups(settings),
        *check_replicas(settings),
    ]


# -- the settings alone ----------------------------------------------------------------------------------------------

def check_environment(settings: Settings) -> Finding:
    """``GEOSERVICE_ENV`` must be ``production``."""
    if settings.env == "production":
        return Finding("ok", "GEOSERVICE_ENV is production: cookies are Secure, a session key is required")
    return Finding("fail", f"GEOSERVICE_ENV is {settings.env}: cookies also go over plain HTTP and a missing "
                           "session key is made up on the spot; set GEOSERVICE_ENV=production")


def check_secret_key(settings: Settings) -> Finding:
    """The session key must pass the rule the app refuses to start on in production."""
    from geoservice.web.auth import session_secret

    try:
        session_secret(settings.replace(env="production"))
    except ConfigError as exc:
        return Finding("fail", exc.description)
    return Finding("ok", "GEOSERVICE_SECRET_KEY is set and looks generated")


def check_public_url(settings: Settings) -> Finding:
    """``GEOSERVICE_PUBLIC_URL`` must be set, with ``https://``."""
    if not settings.public_url:
        return Finding("fail", "GEOSERVICE_PUBLIC_URL is not set: set the address people use, e.g. "
                               "https://map.city.gov.cn (Caddy serves it, with its certificate)")
    if urlsplit(settings.public_url).scheme != "https":
        return Finding("fail", f"GEOSERVICE_PUBLIC_URL is {settings.public_url}: plain HTTP — browsers give the "
                               "farmer page no location and logins travel in clear; use https://")
    return Finding("ok", f"served at {settings.public_url}")


def check_trusted_proxies(settings: Settings) -> Finding:
    """Exactly the one proxy of deploy/Caddyfile is trusted."""
    hops = settings.trusted_proxies
    if hops == PROXIES_IN_FRONT:
        return Finding("ok", "GEOSERVICE_TRUSTED_PROXIES is 1: the app believes Caddy's X-Forwarded-* headers "
                             "and nobody else's")
    if hops == 0:
        return Finding("fail", "GEOSERVICE_TRUSTED_PROXIES is 0: behind Caddy, links, redirects and cookies would "
                               "carry http:// and every client would look like 127.0.0.1; set it to 1")
    return Finding("fail", f"GEOSERVICE_TRUSTED_PROXIES is {hops} but one proxy (Caddy) stands in front: the app "
                           "would wait for headers of proxies that are not there; set it to 1")


def check_trusted_hosts(settings: Settings) -> Finding:
    """The public host name is one the app answers to."""
    from geoservice.security import trusted_hosts

    if not settings.public_url:
        return Finding("fail", "no public host name to check against GEOSERVICE_TRUSTED_HOSTS (set "
                               "GEOSERVICE_PUBLIC_URL)")
    host = (urlsplit(settings.public_url).hostname or "").lower()
    for name in trusted_hosts(settings):
        if host == name or (name.startswith(".") and (host.endswith(name) or host == name[1:])):
            return Finding("ok", f"the app answers to {host}")
    return Finding("fail", f"{host} is not in GEOSERVICE_TRUSTED_HOSTS: the app would answer every request for it "
                           f"with 400; add {host}")


# -- the database ----------------------------------------------------------------------------------------------------

def check_database(settings: Settings) -> list[Finding]:
    """Whether the database answers, who may reach it, and which role the app uses."""
    try:
        owner_url = db.database_url(settings)
        with _connect(owner_url) as conn:
            exposure = check_exposure(conn, embedded=not settings.database_url)
    except GeoserviceError as exc:
        return [Finding("fail", f"database: {exc.description}")]
    except sa.exc.SQLAlchemyError as exc:
        return [Finding("fail", f"database {_where(owner_url)} not reachable: {_reason(exc)}")]
    return [exposure, check_app_role(settings, owner_url)]


def check_exposure(conn: Connection, *, embedded: bool) -> Finding:
    """Who can reach the server: its ``listen_addresses`` and, when readable, its ``pg_hba.conf`` rules."""
    listen = conn.execute(sa.text("SHOW listen_addresses")).scalar_one()
    addresses = {a.strip() for a in listen.split(",")}
    if addresses <= LOOPBACK:
        return Finding("ok", f"the database listens on this machine only (listen_addresses = '{listen}')")
    if embedded:
        return Finding("fail", f"the embedded database listens on '{listen}': reachable from other machines; set "
                               "listen_addresses = '127.0.0.1' in its postgresql.conf (use an external server "
                               "for other machines)")
    superuser = conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one()
    if not superuser:
        return Finding("warn", f"the database listens on '{listen}' and its pg_hba.conf cannot be read by this "
                               "role: make sure it admits only the app servers' addresses")
    rules = conn.execute(sa.text(
        "SELECT line_number, type, array_to_string(database, ','), array_to_string(user_name, ','), address, "
        "netmask, auth_method FROM pg_hba_file_rules WHERE error IS NULL AND type LIKE 'host%' "
        "ORDER BY line_number")).all()
    for line, kind, databases, users, address, netmask, method in rules:
        rule = f"{kind} {databases} {users} {address}{'/' + netmask if netmask else ''} {method}"
        if address == "all" or netmask in ("0.0.0.0", "::"):
            what = "admits every address"
        elif method == "trust" and address not in ("127.0.0.1", "::1", "samehost"):
            what = "trusts another machine without a password"
        else:
            continue
        return Finding("fail", f"the database listens on '{listen}' and pg_hba.conf line {line} {what} ({rule}); "
                               "list only the app servers' addresses, with scram-sha-256")
    return Finding("ok", f"the database listens on '{listen}'; pg_hba.conf admits only listed addresses")


def check_app_role(settings: Settings, owner_url: str) -> Finding:
    """The web app's role is neither a superuser nor the owner of the tables."""
    try:
        app_url = db.app_database_url(settings)
        with _connect(app_url) as conn:
            role, superuser, owned = conn.execute(sa.text(
                "SELECT current_user, r.rolsuper, (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                "AND tableowner = current_user) FROM pg_roles r WHERE r.rolname = current_user")).one()
    except GeoserviceError as exc:
        return Finding("fail", f"the web app's database role: {exc.description}")
    except sa.exc.SQLAlchemyError as exc:
        return Finding("fail", f"the web app cannot connect to {_where(app_url)}: {_reason(exc)}")
    if superuser or owned or make_url(app_url).username == make_url(owner_url).username:
        what = "a superuser" if superuser else "the owner of the tables"
        return Finding("fail", f"the web app connects as {role}, {what}: a flaw in it could change or drop the "
                               "data; set GEOSERVICE_APP_DATABASE_URL to a read-only role (README 'Least "
                               "privilege')")
    return Finding("ok", f"the web app connects as {role}, which owns nothing and is not a superuser")


def check_replicas(settings: Settings) -> list[Finding]:
    """Each read replica answers and is a replica (in recovery)."""
    findings = []
    for url in settings.replica_urls:
        full_url = db.database_url(settings.replace(database_url=url))
        try:
            with _connect(full_url) as conn:
                in_recovery = conn.execute(sa.text("SELECT pg_is_in_recovery()")).scalar_one()
        except sa.exc.SQLAlchemyError as exc:
            findings.append(Finding("warn", f"replica {_where(full_url)} not reachable ({_reason(exc)}): its reads "
                                            "go to the primary"))
            continue
        if in_recovery:
            findings.append(Finding("ok", f"replica {_where(full_url)} answers and replays the primary"))
        else:
            findings.append(Finding("warn", f"replica {_where(full_url)} is not in recovery (promoted?): it no longer "
                                            "follows the primary; remove it from GEOSERVICE_REPLICA_URLS"))
    return findings


def _connect(url: str) -> Connection:
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={
        "connect_timeout": CONNECT_TIMEOUT_S, "application_name": "geoservice deploy check"})
    return engine.connect()


def _where(url: str) -> str:
    """host:port/database of ``url``, never its password."""
    parts = make_url(url)
    hosts = parts.query.get("host")
    if parts.host:
        host = parts.host + (f":{parts.port}" if parts.port else "")
    elif hosts:
        host = ",".join(hosts) if isinstance(hosts, tuple) else hosts
    else:
        host = "the local socket"
    return f"{host}/{parts.database}"


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's first line, cut before anything about a password (as the command line does)."""
    orig = getattr(exc, "orig", None)
    reason = str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else "connection failed"
    return reason.split("password")[0].rstrip(" :") or "connection failed"


# -- backups ---------------------------------------------------------------------------------------------------------

def check_backups(settings: Settings) -> Finding:
    """A complete backup newer than 26 hours is in the backup folder."""
    from geoservice import backup

    try:
        backups = backup.list_backups(settings)
    except GeoserviceError as exc:
        return Finding("fail", exc.description)
    except OSError as exc:
        return Finding("fail", f"the backup folder {settings.backup_dir} cannot be read: {exc.strerror}")
    if not backups:
        return Finding("fail", f"no backup in {settings.backup_dir}: run 'geoservice backup create' and enable "
                               "geoservice-backup.timer")
    newest = backups[0]
    age = datetime.now(UTC) - newest.created_at
    if age > BACKUP_MAX_AGE:
        return Finding("fail", f"the newest backup, {newest.name}, is {_hours(age)} old (more than 26 h): is "
                               "geoservice-backup.timer running? (systemctl list-timers geoservice-backup)")
    return Finding("ok", f"newest backup {newest.name}, {_hours(age)} old ({len(backups)} kept)")


def _hours(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} days"
