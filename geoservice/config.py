"""Every setting of geoservice, typed and documented in one place.

Settings are read once, when :func:`load_settings` is called (normally by the app factory or the CLI), from
environment variables, optionally overlaid on a TOML file named by ``GEOSERVICE_CONFIG``. Nothing is read at
import time. Environment variables win over the file; explicit overrides (tests) win over both.

Settings (environment variable → meaning, default):

``DATABASE_URL``
    SQLAlchemy URL of an external PostgreSQL with PostGIS and pgRouting, e.g.
    ``postgresql://user:pw@host:5432/geoservice``. Unset (the default): use the embedded cluster below.
``GEOSERVICE_PG_DIR``
    Folder the embedded cluster lives in (data, socket, log, password). Default ``var/pg`` relative to the
    working directory.
``GEOSERVICE_PG_PORT``
    TCP port the embedded cluster listens on, on 127.0.0.1 only. Default ``55432``.
``GEOSERVICE_PG_OS_USER``
    When the caller is root, the unprivileged system user that owns and runs the embedded cluster
    (PostgreSQL refuses to run as root). Default ``postgres`` (created by Debian's postgresql package).
``GEOSERVICE_PG_BIN``
    Folder with ``initdb``, ``pg_ctl`` and ``postgres``. Default ``/usr/lib/postgresql/15/bin``.
``GEOSERVICE_DB_NAME``
    Name of the database inside the embedded cluster. Default ``geoservice``.
``GEOSERVICE_APP_DATABASE_URL``
    SQLAlchemy URL the web app (``geoservice serve``, ``create_app``) connects with: a role that may only read the
    data tables (see ``geoservice.db.grant_app_access``), never the owner. Unset (the default): the embedded
    cluster's ``geoservice_app`` role, or, when ``DATABASE_URL`` is set, ``DATABASE_URL`` itself (the app then runs
    as the owner, as before; README "Least privilege" says what an administrator runs to change that). The command
    line (migrations, imports, demo load, network rebuild) always uses the owner: ``DATABASE_URL`` or the embedded
    superuser.
``GEOSERVICE_REPLICA_URLS``
    SQLAlchemy URLs of read replicas (PostgreSQL streaming replicas of the primary), separated by spaces, each
    connecting as the web app's role. Reads that may be slightly stale — maps, tiles, nearest, OGC items, the
    public's pages — go to a replica (``geoservice.db.replicas``); every write, every login and every request of a
    logged-in user or API token (so people read their own writes) goes to the primary, and so does any read while
    no replica answers. A URL may list several hosts in libpq's form (``?host=a:5432&host=b:5432``). Default empty:
    everything goes to the primary.
``GEOSERVICE_REPLICA_RETRY_S``
    Seconds a replica that failed to answer is left out before it is tried again. Default ``10``.
``GEOSERVICE_REPLICA_MAX_LAG_S``
    Bounded staleness: a replica whose replay lags more than this many seconds behind the primary (its replay paused,
    held back by a long query, or its WAL receiver cut off from the primary for that long) is left out until it has
    caught up; the public's reads go to another replica or the primary meanwhile. Each app process measures a
    replica's lag at most once a second. Default ``30``.
``GEOSERVICE_PUBLIC_URL``
    The address people use, e.g. ``https://map.city.gov.cn``: the reverse proxy's site (``deploy/Caddyfile``) and
    what ``geoservice deploy check`` holds the deployment to (it must be ``https://``). Default empty (``make run``
    on the machine itself).
``GEOSERVICE_BACKUP_DIR``
    Folder ``geoservice backup create`` writes to and ``backup list``/``restore`` read. Default ``var/backups``.
``GEOSERVICE_BACKUP_KEEP``
    How many backups ``backup create`` keeps: older ones are removed after a new one is complete. Default ``14``.
``GEOSERVICE_METRIC_CRS``
    Projected CRS (``EPSG:<code>``, in metres) for metric work: lengths, buffers, snapping, coverage. Unset (the
    default): chosen from ``GEOSERVICE_CITY_CENTER`` — the CGCS2000 3-degree Gauss-Kruger zone in China (EPSG:4547,
    CM 114E, for Xuchang), the WGS 84 UTM zone elsewhere (see ``geoservice.crs.metric_crs_for``). A configured CRS
    must hold the city centre in its area of use, else the settings are refused with the zone to use. Every
    computation takes it from here; no module has a default of its own.
``GEOSERVICE_CITY_CENTER``
    ``lon,lat`` the maps open on. Default ``113.826,34.026`` (Weidu district, Xuchang).
``GEOSERVICE_CITY_RADIUS_KM``
    Imports refuse features farther than this many kilometres from ``GEOSERVICE_CITY_CENTER`` (a wrong CRS,
    swapped lon/lat or another city's file). Default ``60``.
``GEOSERVICE_BASEMAP``
    ``osm`` (OpenStreetMap tiles, default), ``tianditu`` (needs ``GEOSERVICE_TIANDITU_KEY``) or ``none``
    (offline: our own streets, grids and outlines are the basemap).
``GEOSERVICE_TIANDITU_KEY``
    The ``tk`` key for Tianditu tiles. Default empty.
``GEOSERVICE_TIMEZONE``
    The city's time zone, for opening hours. Default ``Asia/Shanghai``.
``GEOSERVICE_SLIVER_AREA_M2``
    Gaps and overlaps between unit grids smaller than this many square metres are digitising noise: counted
    separately, not reported. Default ``1``.
``GEOSERVICE_HEALTH_TIMEOUT``
    Seconds ``/healthz`` waits for the database before answering 503. Default ``3``.
``GEOSERVICE_TIMEOUT_LOOKUP_S``, ``GEOSERVICE_TIMEOUT_LAYER_S``, ``GEOSERVICE_TIMEOUT_ANALYSIS_S``
    Statement timeout in seconds for each class of request (``geoservice.budget``): lookups (nearest, the grid at a
    spot, search, one feature; default ``5``), map layers and OGC item pages (default ``20``) and analyses
    (coverage, grid gaps, service areas; default ``60``). A request past it answers 503 with ``Retry-After``.
``GEOSERVICE_ANALYSIS_SLOTS``
    How many analyses may compute at once across every worker (default ``3``: the planner page asks for three at
    once); one more is refused at once with 503 ``Busy`` and ``Retry-After`` (the pages ask again after it) rather
    than queued, so cheap requests never wait behind analyses.
``GEOSERVICE_TRUSTED_PROXIES``
    How many reverse proxies (the Caddy of ``deploy/Caddyfile``, a government gateway) stand in front of the
    service. Their ``X-Forwarded-For``, ``-Proto``, ``-Host`` and ``-Port`` headers are then believed, so the links
    in OGC API answers carry the public ``https://`` address. Default ``0``: the headers are ignored, since any
    client could forge them. The service must be mounted at the root of its host name (the pages use absolute
    paths).
``GEOSERVICE_TRUSTED_HOSTS``
    Comma-separated host names (or IPv4 addresses) the service answers to besides ``localhost`` and ``127.0.0.1``,
    e.g. ``map.city.gov.cn``; a leading dot (``.city.gov.cn``) accepts every name under it. A request for any other
    host (its ``Host`` header, or ``X-Forwarded-Host`` from a trusted proxy) is answered 400, so a forged name never
    reaches an absolute link. Default empty: only the machine itself. List the public name when serving behind a
    proxy or on another address. IPv6 literals cannot be listed (Werkzeug compares names up to the first colon).
``GEOSERVICE_ENV``
    ``development`` (default: ``make run`` on the machine itself) or ``production``. In production the session key
    must be set (``GEOSERVICE_SECRET_KEY``) and cookies are sent only over HTTPS (``Secure``).
``GEOSERVICE_SECRET_KEY``
    The key that signs login sessions and their CSRF tokens: at least 32 random characters, the same for every app
    process, never committed (e.g. ``python3 -c 'import secrets; print(secrets.token_urlsafe(48))'``). Unset in
    development: a key generated once and kept (mode 0600) under ``var/``. Unset, short or a known example in
    production: the app refuses to start.
``GEOSERVICE_SESSION_IDLE_MINUTES``
    A login session ends after this many minutes without a request. Default ``30``.
``GEOSERVICE_LOGIN_MAX_FAILURES``, ``GEOSERVICE_LOGIN_ADDRESS_MAX_FAILURES``, ``GEOSERVICE_LOGIN_WINDOW_MINUTES``
    Failed logins allowed per account (default ``5``) and per client address (default ``20``) within the window
    (default ``15`` minutes); more are refused with 429 and ``Retry-After``. Counted in the database, so the limit
    holds across every app process.
``GEOSERVICE_OCCUPANCY_STALE_MINUTES``
    A point whose occupancy was last updated longer ago than this is shown as possibly out of date on the farmer
    page and the city map. Default ``120``.
``GEOSERVICE_SITING_TIME_LIMIT_S``
    Wall time in seconds a siting question (where new points would cover the most, ``geoservice.siting``) may spend
    solving; the exact MILP stops at it and the best answer so far (greedy's, or the MILP's when better) is given,
    with its optimality gap. Default ``10``.
``GEOSERVICE_SITING_MAX_CANDIDATES``
    Largest siting instance solved exactly with the MILP, in candidate sites that would cover something new and that
    no other candidate dominates; larger ones are answered by greedy alone, with its bound. Default ``5000``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from geoservice.crs import check_metric_crs, metric_crs_for, scale_error
from geoservice.errors import ConfigError, InvalidParameter

BASEMAPS = ("osm", "tianditu", "none")
ENVIRONMENTS = ("development", "production")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The settings of one geoservice process; see the module docstring for each one."""

    database_url: str | None = None
    pg_dir: Path = field(default_factory=lambda: Path("var/pg"))
    pg_port: int = 55432
    pg_os_user: str = "postgres"
    pg_bin: Path = field(default_factory=lambda: Path("/usr/lib/postgresql/15/bin"))
    db_name: str = "geoservice"
    app_database_url: str | None = None
    replica_urls: tuple[str, ...] = ()
    replica_retry_s: float = 10.0
    replica_max_lag_s: float = 30.0
    public_url: str | None = None
    backup_dir: Path = field(default_factory=lambda: Path("var/backups"))
    backup_keep: int = 14
    metric_crs: str | None = None
    city_center: tuple[float, float] = (113.826, 34.026)
    city_radius_km: float = 60.0
    basemap: str = "osm"
    tianditu_key: str = ""
    timezone: str = "Asia/Shanghai"
    sliver_area_m2: float = 1.0
    health_timeout: float = 3.0
    trusted_proxies: int = 0
    trusted_hosts: tuple[str, ...] = ()
    timeout_lookup_s: float = 5.0
    timeout_layer_s: float = 20.0
    timeout_analysis_s: float = 60.0
    analysis_slots: int = 3
    env: str = "development"
    secret_key: str | None = None
    session_idle_minutes: int = 30
    login_max_failures: int = 5
    login_address_max_failures: int = 20
    login_window_minutes: int = 15
    occupancy_stale_minutes: int = 120
    siting_time_limit_s: float = 10.0
    siting_max_candidates: int = 5000
    metric_crs_chosen: bool = field(default=False, init=False, compare=False)
    """True when ``metric_crs`` was chosen from the city centre rather than configured."""

    def __post_init__(self) -> None:
        self._resolve_metric_crs()
        if self.basemap not in BASEMAPS:
            raise ConfigError(f"basemap must be one of {', '.join(BASEMAPS)}, got {self.basemap!r}")
        if self.basemap == "tianditu" and not self.tianditu_key:
            raise ConfigError("basemap 'tianditu' needs GEOSERVICE_TIANDITU_KEY (the Tianditu 'tk' key)")
        if not 0 < self.city_radius_km <= 20_000:
            raise ConfigError(f"city_radius_km must be between 0 and 20000 km, got {self.city_radius_km}")
        if not 0 <= self.trusted_proxies <= 10:
            raise ConfigError(f"trusted_proxies must be between 0 and 10, got {self.trusted_proxies}")
        _check_host_names(self.trusted_hosts)
        for name in ("timeout_lookup_s", "timeout_layer_s", "timeout_analysis_s", "siting_time_limit_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigError(f"{name} must be between 0 and 3600 seconds, got {getattr(self, name)}")
        if not 1 <= self.analysis_slots <= 64:
            raise ConfigError(f"analysis_slots must be between 1 and 64, got {self.analysis_slots}")
        if self.env not in ENVIRONMENTS:
            raise ConfigError(f"env must be one of {', '.join(ENVIRONMENTS)}, got {self.env!r}")
        for name in ("session_idle_minutes", "login_max_failures", "login_address_max_failures",
                     "login_window_minutes", "occupancy_stale_minutes", "siting_max_candidates"):
            if not 1 <= getattr(self, name) <= 100_000:
                raise ConfigError(f"{name} must be between 1 and 100000, got {getattr(self, name)}")
        self._check_deployment()
        if not 0 < self.pg_port < 65536:
            raise ConfigError(f"pg_port must be between 1 and 65535, got {self.pg_port}")

    def _check_deployment(self) -> None:
        if not 0 < self.replica_retry_s <= 3600:
            raise ConfigError(f"replica_retry_s must be between 0 and 3600 seconds, got {self.replica_retry_s}")
        if not 0 < self.replica_max_lag_s <= 3600:
            raise ConfigError(f"replica_max_lag_s must be between 0 and 3600 seconds, got {self.replica_max_lag_s}")
        if not 1 <= self.backup_keep <= 10_000:
            raise ConfigError(f"backup_keep must be between 1 and 10000, got {self.backup_keep}")
        if self.public_url is not None and not re.fullmatch(r"https?://[^/\s?#]+/?", self.public_url):
            raise ConfigError(f"public_url must be a scheme and host such as https://map.city.gov.cn (no path), "
                              f"got {self.public_url!r}")

    def _resolve_metric_crs(self) -> None:
        lon, lat = self.city_center
        try:
            if self.metric_crs is None:
                object.__setattr__(self, "metric_crs", metric_crs_for(lon, lat))
                object.__setattr__(self, "metric_crs_chosen", True)
            else:
                check_metric_crs(self.metric_crs, lon, lat, what="GEOSERVICE_CITY_CENTER")
        except InvalidParameter as exc:
            raise ConfigError(f"GEOSERVICE_METRIC_CRS: {exc}") from None

    def metric_crs_report(self) -> dict:
        """The metric CRS as ``/healthz`` and ``geoservice db status`` show it."""
        return {**_crs_description(self.metric_crs, self.city_center),
                "chosen_from_city_center": self.metric_crs_chosen}

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (validated again).

        A metric CRS chosen from the city centre is chosen again for a new centre.
        """
        if self.metric_crs_chosen and "metric_crs" not in changes:
            changes["metric_crs"] = None
        return dataclasses.replace(self, **changes)


_HOST_NAME = re.compile(r"\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", re.IGNORECASE)


def _check_host_names(names: tuple[str, ...]) -> None:
    for name in names:
        if not _HOST_NAME.fullmatch(name):
            raise ConfigError(f"trusted_hosts: {name!r} is not a host name; list names such as map.city.gov.cn "
                              "(or .city.gov.cn for every name under it), without scheme, port or path")


@lru_cache(maxsize=8)
def _crs_description(metric_crs: str, center: tuple[float, float]) -> dict:
    """Name and scale error at the centre, computed once per process (``/healthz`` is polled often)."""
    from pyproj import CRS

    return {"code": metric_crs, "name": CRS(metric_crs).name,
            "scale_error_pct": round(100 * scale_error(metric_crs, *center), 4)}


ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "pg_dir": "GEOSERVICE_PG_DIR",
    "pg_port": "GEOSERVICE_PG_PORT",
    "pg_os_user": "GEOSERVICE_PG_OS_USER",
    "pg_bin": "GEOSERVICE_PG_BIN",
    "db_name": "GEOSERVICE_DB_NAME",
    "app_database_url": "GEOSERVICE_APP_DATABASE_URL",
    "replica_urls": "GEOSERVICE_REPLICA_URLS",
    "replica_retry_s": "GEOSERVICE_REPLICA_RETRY_S",
    "replica_max_lag_s": "GEOSERVICE_REPLICA_MAX_LAG_S",
    "public_url": "GEOSERVICE_PUBLIC_URL",
    "backup_dir": "GEOSERVICE_BACKUP_DIR",
    "backup_keep": "GEOSERVICE_BACKUP_KEEP",
    "metric_crs": "GEOSERVICE_METRIC_CRS",
    "city_center": "GEOSERVICE_CITY_CENTER",
    "city_radius_km": "GEOSERVICE_CITY_RADIUS_KM",
    "basemap": "GEOSERVICE_BASEMAP",
    "tianditu_key": "GEOSERVICE_TIANDITU_KEY",
    "timezone": "GEOSERVICE_TIMEZONE",
    "sliver_area_m2": "GEOSERVICE_SLIVER_AREA_M2",
    "health_timeout": "GEOSERVICE_HEALTH_TIMEOUT",
    "trusted_proxies": "GEOSERVICE_TRUSTED_PROXIES",
    "trusted_hosts": "GEOSERVICE_TRUSTED_HOSTS",
    "timeout_lookup_s": "GEOSERVICE_TIMEOUT_LOOKUP_S",
    "timeout_layer_s": "GEOSERVICE_TIMEOUT_LAYER_S",
    "timeout_analysis_s": "GEOSERVICE_TIMEOUT_ANALYSIS_S",
    "analysis_slots": "GEOSERVICE_ANALYSIS_SLOTS",
    "env": "GEOSERVICE_ENV",
    "secret_key": "GEOSERVICE_SECRET_KEY",
    "session_idle_minutes": "GEOSERVICE_SESSION_IDLE_MINUTES",
    "login_max_failures": "GEOSERVICE_LOGIN_MAX_FAILURES",
    "login_address_max_failures": "GEOSERVICE_LOGIN_ADDRESS_MAX_FAILURES",
    "login_window_minutes": "GEOSERVICE_LOGIN_WINDOW_MINUTES",
    "occupancy_stale_minutes": "GEOSERVICE_OCCUPANCY_STALE_MINUTES",
    "siting_time_limit_s": "GEOSERVICE_SITING_TIME_LIMIT_S",
    "siting_max_candidates": "GEOSERVICE_SITING_MAX_CANDIDATES",
}


def _coerce(name: str, raw: Any) -> Any:
    """Turn a raw (string or TOML) value into the type the setting ``name`` declares."""
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "tuple[float, float]":
            parts = raw.split(",") if isinstance(raw, str) else list(raw)
            lon, lat = (float(p) for p in parts)
            return (lon, lat)
        if kind == "tuple[str, ...]":
            # URLs may hold commas (libpq's host lists): they are separated by spaces
            separator = None if name.endswith("_urls") else ","
            parts = raw.split(separator) if isinstance(raw, str) else list(raw)
            return tuple(str(p).strip() for p in parts if str(p).strip())
        return (str(raw) or None) if kind == "str | None" else str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {ENV_NAMES[name]} has an invalid value {raw!r} ({kind} expected)") from exc


def load_settings(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Read the settings from a TOML file (``GEOSERVICE_CONFIG``), the environment and ``overrides``.

    Args:
        env: the environment to read; ``os.environ`` when omitted.
        overrides: values that win over everything else (already typed), keyed by setting name.

    Returns:
        The validated settings.

    Raises:
        ConfigError: a value does not parse or is not allowed.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_file = env.get("GEOSERVICE_CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                from_file = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read GEOSERVICE_CONFIG file {config_file}: {exc}") from exc
        unknown = set(from_file) - set(ENV_NAMES)
        if unknown:
            raise ConfigError(f"unknown settings in {config_file}: {', '.join(sorted(unknown))}")
        values.update({k: _coerce(k, v) for k, v in from_file.items()})
    for name, var in ENV_NAMES.items():
        if env.get(var):
            values[name] = _coerce(name, env[var])
    values.update(overrides or {})
    return Settings(**values)
