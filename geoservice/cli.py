"""The ``geoservice`` command line: thin click commands that call the core, print, and set the exit code.

Every failure exits non-zero with one line on stderr that says what went wrong (never a traceback, never a
password).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from geoservice import accounts, db
from geoservice.config import Settings, load_settings
from geoservice.db.embedded import EmbeddedCluster
from geoservice.errors import GeoserviceError


def _one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn known errors into a one-line message on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GeoserviceError as exc:
            click.echo(f"geoservice: {exc.description}", err=True)
            sys.exit(1)
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
            reason = reason.split("password")[0].rstrip(" :") or "connection failed"
            click.echo(f"geoservice: database not reachable: {reason}", err=True)
            sys.exit(1)

    return wrapper


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj


@click.group()
@click.version_option(package_name="geoservice")
@click.pass_context
def main(ctx: click.Context) -> None:
    """geoservice: city map service for convenience points, streets and unit grids on PostGIS."""
    try:
        ctx.obj = load_settings()
    except GeoserviceError as exc:
        click.echo(f"geoservice: {exc.description}", err=True)
        sys.exit(2)


@main.group("db")
def db_group() -> None:
    """Run the embedded PostGIS and manage the schema."""


@db_group.command("up")
@click.pass_context
@_one_line_errors
def db_up(ctx: click.Context) -> None:
    """Create (first time) and start the embedded cluster, then apply pending migrations."""
    settings = _settings(ctx)
    if settings.database_url:
        click.echo("DATABASE_URL is set: using that server, no embedded cluster to start")
    else:
        click.echo(f"database at {EmbeddedCluster(settings).up()}")
    _upgrade(settings)


@db_group.command("down")
@click.pass_context
@_one_line_errors
def db_down(ctx: click.Context) -> None:
    """Stop the embedded cluster."""
    settings = _settings(ctx)
    if settings.database_url:
        click.echo("DATABASE_URL is set: there is no embedded cluster to stop")
        return
    stopped = EmbeddedCluster(settings).down()
    click.echo("stopped" if stopped else "not running")


@db_group.command("status")
@click.pass_context
@_one_line_errors
def db_status(ctx: click.Context) -> None:
    """Say whether the database runs, where, at which schema revision, and the metric CRS. Exit 1 when it is down."""
    settings = _settings(ctx)
    if not settings.database_url:
        status = EmbeddedCluster(settings).status()
        if not status.running:
            state = "stopped" if status.initialized else "not created"
            click.echo(f"embedded cluster {state} ({status.data_dir})", err=True)
            sys.exit(1)
        click.echo(f"embedded cluster running, pid {status.pid}, port {status.port}, data {status.data_dir}")
    engine = db.make_engine(db.database_url(settings))
    with engine.connect() as conn:
        current = db.current_revision(conn)
    engine.dispose()
    click.echo(f"schema revision {current or 'none'} (newest {db.head_revision()})")
    crs = settings.metric_crs_report()
    how = "chosen from the city centre" if crs["chosen_from_city_center"] else "configured"
    click.echo(f"metric CRS {crs['code']} ({crs['name']}), {how}; "
               f"scale error at the centre {crs['scale_error_pct']:+.3f} %")


@db_group.command("upgrade")
@click.pass_context
@_one_line_errors
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending schema migrations."""
    _upgrade(_settings(ctx))


def _upgrade(settings: Settings) -> None:
    engine = db.make_engine(db.database_url(settings))
    try:
        with engine.connect() as conn:
            with conn.begin():
                created = db.ensure_extensions(conn)
                before = db.current_revision(conn)
            granted = db.upgrade(conn)
            after = db.current_revision(conn)
    finally:
        engine.dispose()
    if created:
        click.echo(f"extensions created: {', '.join(created)}")
    click.echo(f"schema at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))
    if granted:
        writes = "; ".join(f"{', '.join(p)} on {t}" for t, p in db.APP_WRITES.items()) or "nothing"
        click.echo(f"web app role {db.APP_ROLE}: may read {', '.join(db.APP_READS)}; write {writes}")
    else:
        click.echo(f"no role {db.APP_ROLE} on this server: the web app connects with DATABASE_URL "
                   "(README, Least privilege)")


@main.group("demo")
def demo_group() -> None:
    """The Weidu demo city."""


@demo_group.command("load")
@click.option("--replace", is_flag=True, help="Replace whatever the database holds with the demo city.")
@click.option("--if-empty", is_flag=True,
              help="Load only into an empty database; leave one with data as it is (exit 0). What `make run` does.")
@click.pass_context
@_one_line_errors
def demo_load(ctx: click.Context, replace: bool, if_empty: bool) -> None:
    """Load the deterministic Weidu demo city into an empty database and print the row counts.

    A database that already holds exactly the demo city is left as it is. Any other data is never replaced without
    --replace: the command refuses, naming what it would destroy, and exits 1.
    """
    from geoservice.demo import NotTheDemo, load_demo

    if replace and if_empty:
        raise click.UsageError("--replace and --if-empty contradict each other; give one")
    engine = db.make_engine(db.database_url(_settings(ctx)))
    try:
        with engine.begin() as conn:
            done = load_demo(conn, replace=replace, if_empty=if_empty)
    except NotTheDemo as exc:
        click.echo(f"geoservice: {exc.description}; `geoservice demo load --replace` replaces them", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    counts = ", ".join(f"{table} {n}" for table, n in done.counts.items())
    click.echo({
        "loaded": f"demo city loaded: {counts}",
        "replaced": f"data replaced by the demo city: {counts}",
        "unchanged": f"the database already holds the demo city, unchanged; nothing written: {counts}",
        "kept": f"the database already holds data, left as it is (no demo loaded): {counts}",
    }[done.outcome])


@main.group("network")
def network_group() -> None:
    """The walking network built from the street table."""


@network_group.command("rebuild")
@click.option("--tolerance", default=0.5, show_default=True, type=click.FloatRange(0, 100),
              help="Metres: street ends closer than this are one node; meetings closer to an end do not split.")
@click.option("--split/--no-split", default=True, show_default=True,
              help="First split segments where another segment crosses them or ends on them.")
@click.pass_context
@_one_line_errors
def network_rebuild(ctx: click.Context, tolerance: float, split: bool) -> None:
    """Split streets at intersections and recompute the routing topology (source/target nodes)."""
    from geoservice.ingest.topology import rebuild_topology, split_at_intersections

    settings = _settings(ctx)
    engine = db.make_engine(db.database_url(settings))
    with engine.begin() as conn:
        added = split_at_intersections(conn, tolerance_m=tolerance) if split else 0
        counts = rebuild_topology(conn, tolerance_m=tolerance, metric_crs=settings.metric_crs)
    engine.dispose()
    click.echo(f"network rebuilt: {counts['edges']} edges ({added} added by splitting), {counts['nodes']} nodes, "
               f"{counts['components']} connected parts, {counts['dead_ends']} dead ends, "
               f"{counts['changed']} streets changed")


class _TerminalProgress:
    """A progress bar per stage on stderr, only when stderr is a terminal (quiet in CI and pipes)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._bar = None
        self._stage = None
        self._done = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self._stage:
            self.close()
            self._bar = click.progressbar(length=total, label=stage, file=sys.stderr)
            self._bar.__enter__()
            self._stage, self._done = stage, 0
        self._bar.update(done - self._done)
        self._done = done

    def close(self) -> None:
        """Finish the current bar, if any."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _parse_mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise click.BadParameter(f"expected field=column, got {pair!r}", param_hint="--map")
        mapping[field.strip()] = column.strip()
    return mapping


def _import_summary(result) -> str:
    counts = result.counts
    verb = "would write" if result.dry_run else "wrote"
    rejected = len({i.row for i in result.rejected})
    line = (f"{result.kind}: read {result.read:,}, {verb} {result.written:,} (inserted {counts.inserted:,}, "
            f"updated {counts.updated:,}, deleted {counts.deleted:,}), rejected {rejected:,}, "
            f"repaired {len(result.repaired):,} in {result.seconds:.1f} s ({result.rows_per_s:,.0f} rows/s)")
    if result.network:
        net = result.network
        line += (f"; network: {net['edges']:,} edges ({net['split_added']:,} added by splitting), "
                 f"{net['nodes']:,} nodes, {net['components']:,} connected parts")
    return line


@main.command("import")
@click.argument("kind")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--layer", help="GeoPackage layer, Shapefile inside a .zip, or XLSX sheet.")
@click.option("--crs", help="The coordinates' CRS: EPSG:<code> (overrides the file), gcj02 or bd09 (converted).")
@click.option("--encoding", help="Text encoding of a Shapefile without .cpg or a CSV (default: UTF-8, else GBK).")
@click.option("--map", "mapping", multiple=True, metavar="FIELD=COLUMN",
              help="Take FIELD (or lon/lat/wkt) from the file's COLUMN; repeatable.")
@click.option("--replace/--append", default=False, show_default=True,
              help="Replace the whole layer, or add to it (keys must be new).")
@click.option("--dry-run", is_flag=True, help="Validate and report, write nothing.")
@click.option("--repair", is_flag=True, help="Make invalid geometries valid (make-valid) and report them.")
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows even when some are rejected.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every rejection and repair (row, field, reason) to this .csv or .json file.")
@click.pass_context
@_one_line_errors
def import_command(ctx: click.Context, kind: str, path: Path, **options: Any) -> None:
    """Import the file PATH as KIND (districts, subdistricts, communities, grids, squads, streets, points).

    All-or-nothing: with any rejected row (unless --skip-invalid) or error, nothing is written.
    """
    from geoservice.ingest import ImportOptions, import_file

    settings = _settings(ctx)
    opts = ImportOptions(**{**options, "mapping": _parse_mapping(options["mapping"])},
                         city_center=settings.city_center, radius_km=settings.city_radius_km,
                         metric_crs=settings.metric_crs)
    progress = _TerminalProgress()
    engine = db.make_engine(db.database_url(settings))
    try:
        with engine.begin() as conn:
            result = import_file(conn, kind, path, options=opts, progress=progress)
    finally:
        progress.close()
        engine.dispose()
    click.echo(_import_summary(result))


@main.command("export")
@click.argument("kind")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
@_one_line_errors
def export_command(ctx: click.Context, kind: str, path: Path) -> None:
    """Write every row of KIND to PATH; the format follows the extension (.gpkg .geojson .shp .zip .csv .xlsx)."""
    from geoservice.ingest import export_file

    progress = _TerminalProgress()
    engine = db.make_engine(db.database_url(_settings(ctx)))
    try:
        with engine.connect() as conn:
            result = export_file(conn, kind, path, progress=progress)
    finally:
        progress.close()
        engine.dispose()
    click.echo(f"{result.kind}: wrote {result.rows:,} rows to {path} in {result.seconds:.1f} s "
               f"({result.rows_per_s:,.0f} rows/s)")


# -- siting ----------------------------------------------------------------------------------------------------------

@main.command("siting")
@click.option("--count", type=int, help="How many new sites at most (maximal covering; 5 without --target).")
@click.option("--target", type=float, help="The covered % to reach with the fewest new sites (at most --count).")
@click.option("--radius", type=float, help="Coverage radius in metres (default 500; 300 when the only kind is toilet).")
@click.option("--kind", "kinds", multiple=True, help="A point kind that counts; repeatable (default: every kind).")
@click.option("--mode", default="straight", show_default=True, help="straight (metres) or walk (along the streets).")
@click.option("--district", help="6-digit district code: streets and candidate sites inside it.")
@click.option("--bbox", help="minlon,minlat,maxlon,maxlat: streets and candidate sites inside the box.")
@click.option("--candidates", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your own candidate sites: a CSV of lon,lat or a GeoJSON file of points (default: street "
                   "intersections and midpoints off the arterials).")
@click.option("--planned", is_flag=True, help="Count planned points as existing (what if).")
@click.option("--time-limit", type=click.FloatRange(0, 3600, min_open=True),
              help="Seconds the solver may take (default: GEOSERVICE_SITING_TIME_LIMIT_S).")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "geojson"]), default="text", show_default=True,
              help="text: a table and a summary; csv or geojson: the sites as a file.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file (default: stdout).")
@click.pass_context
@_one_line_errors
def siting_command(ctx: click.Context, fmt: str, out: Path | None, candidates: Path | None, bbox: str | None,
                   time_limit: float | None, **question: Any) -> None:
    """Where new points would cover the most street: --count N sites, or the fewest reaching --target %."""
    from geoservice import downloads, siting
    from geoservice.params import parse_bbox
    from geoservice.spatial import box_around

    settings = _settings(ctx)
    if question["count"] is None and question["target"] is None:
        question["count"] = siting.DEFAULT_COUNT
    sites = None if candidates is None else siting.read_candidates(candidates.read_bytes())
    engine = db.make_engine(db.database_url(settings))
    try:
        with engine.connect() as conn:
            result = siting.suggest_sites(
                conn, kinds=question["kinds"] or None, radius_m=question["radius"], mode=question["mode"],
                count=question["count"], target_pct=question["target"], district=question["district"],
                bbox=parse_bbox(bbox), candidates=sites, include_planned=question["planned"],
                metric_crs=settings.metric_crs, time_limit_s=time_limit or settings.siting_time_limit_s,
                max_candidates=settings.siting_max_candidates,
                extent=box_around(*settings.city_center, settings.city_radius_km * 1000))
    finally:
        engine.dispose()
    body = siting.sites_table(result) if fmt == "text" else downloads.sites_file(result, fmt=fmt).body
    if out is None:
        click.echo(body if isinstance(body, str) else body.decode("utf-8-sig"), nl=fmt == "text")
    else:
        out.write_bytes(body.encode("utf-8") if isinstance(body, str) else body)
        click.echo(f"{result['summary']['sites']} sites written to {out}", err=True)


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.pass_context
@_one_line_errors
def serve(ctx: click.Context, host: str, port: int, workers: int) -> None:
    """Serve the maps and the API with gunicorn."""
    from geoservice.server import serve as run_server
    from geoservice.web.auth import session_secret

    session_secret(_settings(ctx))  # refused here, in one line, rather than by every worker at boot
    run_server(_settings(ctx), host=host, port=port, workers=workers)


# -- running it for a city: backups and the deployment check -------------------------------------------------------

@main.group("backup")
def backup_group() -> None:
    """Back the database up, list the backups, restore one (pg_dump custom format, with retention)."""


@backup_group.command("create")
@click.pass_context
@_one_line_errors
def backup_create(ctx: click.Context) -> None:
    """Write a new backup to GEOSERVICE_BACKUP_DIR, then keep only the newest GEOSERVICE_BACKUP_KEEP."""
    from geoservice import backup

    made = backup.create(_settings(ctx))
    click.echo(backup.describe(made))


@backup_group.command("list")
@click.pass_context
@_one_line_errors
def backup_list(ctx: click.Context) -> None:
    """The backups, newest first: name, time, schema revision, size."""
    from geoservice import backup

    for item in backup.list_backups(_settings(ctx)):
        click.echo(backup.describe(item))


@backup_group.command("restore")
@click.argument("name")
@click.option("--into", "into", default=None, metavar="URL_OR_NAME",
              help="Restore into this new database (a URL, or a database name in the embedded cluster) instead "
                   "of replacing the current one.")
@click.option("--yes", is_flag=True, help="Replace the current database's data without asking.")
@click.pass_context
@_one_line_errors
def backup_restore(ctx: click.Context, name: str, into: str | None, yes: bool) -> None:
    """Restore the backup NAME (from `backup list`; `latest` for the newest)."""
    from geoservice import backup

    click.echo(backup.restore(_settings(ctx), name, into=into, replace=yes))


@main.group("deploy")
def deploy_group() -> None:
    """Check a production deployment (deploy/ holds the layout: proxy, systemd units, settings, log rotation)."""


@deploy_group.command("check")
@click.pass_context
@_one_line_errors
def deploy_check(ctx: click.Context) -> None:
    """Say what is missing or unsafe for serving the public; exit 1 when anything is."""
    from geoservice import deploy

    findings = deploy.check(_settings(ctx))
    for finding in findings:
        click.echo(str(finding))
    if any(f.blocking for f in findings):
        sys.exit(1)


# -- reports ---------------------------------------------------------------------------------------------------------

@main.group("report")
def report_group() -> None:
    """Reports for the bureau's meetings, as one self-contained HTML file or a PDF."""


@report_group.command("coverage")
@click.option("--radius", type=float, help="Coverage radius in metres (default 500; 300 when the only kind is toilet).")
@click.option("--kind", "kinds", multiple=True, help="A point kind that counts; repeatable (default: every kind).")
@click.option("--mode", default="straight", show_default=True, help="straight (metres) or walk (along the streets).")
@click.option("--district", help="6-digit district code (default: the whole city).")
@click.option("--sites", "site_count", type=int, default=5, show_default=True,
              help="Suggest this many new sites (0: no siting section).")
@click.option("--planned", is_flag=True, help="What if: count planned points as if they were open.")
@click.option("--lang", default="zh", show_default=True, help="zh (Chinese) or en (English).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The file to write: report.html (self-contained) or report.pdf (printed by headless Chromium).")
@click.pass_context
@_one_line_errors
def report_coverage(ctx: click.Context, out: Path, **question: Any) -> None:
    """Write the coverage report: headline figures, areas, charts, maps, grid gaps, suggested sites, row counts.

    A progress bar on stderr (at a terminal) follows the steps.
    """
    import time

    from geoservice import report
    from geoservice.hours import local_now

    settings = _settings(ctx)
    fmt = report.check_output(out)
    started = time.monotonic()
    options = report.check_options(report.ReportOptions.from_settings(
        settings, lang=question["lang"], site_count=question["site_count"], include_planned=question["planned"],
        generated_at=local_now(settings.timezone)))
    progress = _TerminalProgress()
    engine = db.make_engine(db.database_url(settings))
    try:
        with engine.connect() as conn:
            html = report.coverage_report(conn, radius_m=question["radius"], kinds=question["kinds"] or None,
                                          mode=question["mode"], district=question["district"],
                                          metric_crs=settings.metric_crs, options=options, progress=progress)
    finally:
        progress.close()
        engine.dispose()
    body = report.print_pdf(html) if fmt == "pdf" else html.encode("utf-8")
    report.write_output(out, body)
    click.echo(f"coverage report written to {out} ({len(body) / 1024:,.0f} KB, {fmt}) in "
               f"{time.monotonic() - started:.1f} s")


# -- users and tokens ------------------------------------------------------------------------------------------------

@main.group("user")
def user_group() -> None:
    """Accounts of the bureau's staff: roles, assigned kiosks, API tokens (README "Users and roles")."""


@contextmanager
def _accounts_connection(ctx: click.Context) -> Iterator[sa.Connection]:
    """A transaction as the database owner (accounts are written by the command line only), committed on success."""
    engine = db.make_engine(db.database_url(_settings(ctx)))
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin (``--password-stdin``), else asked twice at the terminal, never echoed.

    Never a command-line argument, which every user of the machine sees in ``ps``.
    """
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.UsageError("--password-stdin: nothing on standard input; give the password on one line")
        return line.rstrip("\r\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)


ROLE_CHOICE = click.Choice(accounts.ROLES)
PASSWORD_STDIN = click.option("--password-stdin", is_flag=True,
                              help="Read the password from the first line of standard input instead of asking.")


@user_group.command("add")
@click.argument("username")
@click.option("--role", required=True, type=ROLE_CHOICE, help="kiosk_staff, officer, planner or admin.")
@click.option("--name", "display_name", help="The name shown in the pages' corner (default: the username).")
@click.option("--squad", help="An officer's squad, by name (e.g. 文博中队); required for officers.")
@PASSWORD_STDIN
@click.pass_context
@_one_line_errors
def user_add(ctx: click.Context, username: str, role: str, display_name: str | None, squad: str | None,
             password_stdin: bool) -> None:
    """Create the account USERNAME with a role; the password is asked for (or read with --password-stdin)."""
    password = _read_password(password_stdin)
    with _accounts_connection(ctx) as conn:
        user = accounts.create_user(conn, username=username, display_name=display_name or username, role=role,
                                    password=password, squad_name=squad)
    squad_note = f", squad {user.squad_name}" if user.squad_name else ""
    click.echo(f"user {user.username} added: {user.role} ({user.display_name}){squad_note}")


@user_group.command("list")
@click.pass_context
@_one_line_errors
def user_list(ctx: click.Context) -> None:
    """Every account: username, role, squad or points, usable tokens, disabled or not."""
    with _accounts_connection(ctx) as conn:
        listing = accounts.list_users(conn)
    if not listing:
        click.echo("no users yet; the first administrator: geoservice user add admin --role admin")
        return
    for account in listing:
        user = account.user
        where = (f"squad {user.squad_name}" if user.squad_name else
                 f"points {','.join(map(str, sorted(user.point_ids))) or 'none'}" if user.role == "kiosk_staff"
                 else "-")
        state = "disabled" if account.disabled else "active"
        click.echo(f"{user.username}\t{user.role}\t{user.display_name}\t{where}\ttokens {account.active_tokens}\t"
                   f"{state}")


@user_group.command("set-role")
@click.argument("username")
@click.argument("role", type=ROLE_CHOICE)
@click.option("--squad", help="The squad, by name, when ROLE is officer.")
@click.pass_context
@_one_line_errors
def user_set_role(ctx: click.Context, username: str, role: str, squad: str | None) -> None:
    """Give USERNAME the role ROLE (an officer with --squad); assigned points are kept only for kiosk_staff."""
    with _accounts_connection(ctx) as conn:
        user = accounts.set_role(conn, username, role, squad_name=squad)
    click.echo(f"user {user.username} is now {user.role}" + (f", squad {user.squad_name}" if user.squad_name else ""))


@user_group.command("assign")
@click.argument("username")
@click.argument("point_ids", nargs=-1, type=click.IntRange(min=1))
@click.option("--clear", is_flag=True, help="Take every point away (instead of giving POINT_IDS).")
@click.pass_context
@_one_line_errors
def user_assign(ctx: click.Context, username: str, point_ids: tuple[int, ...], clear: bool) -> None:
    """Make POINT_IDS the points (kiosks) kiosk staff USERNAME looks after, replacing any assigned before."""
    if bool(point_ids) == clear:
        raise click.UsageError("give the point ids, or --clear to take every point away (not both)")
    with _accounts_connection(ctx) as conn:
        user = accounts.assign_points(conn, username, point_ids)
    ids = ", ".join(map(str, sorted(user.point_ids))) or "none"
    click.echo(f"user {user.username} looks after points: {ids}")


@user_group.command("disable")
@click.argument("username")
@click.pass_context
@_one_line_errors
def user_disable(ctx: click.Context, username: str) -> None:
    """Disable USERNAME: its sessions end at their next request, its tokens stop working, it cannot log in."""
    with _accounts_connection(ctx) as conn:
        accounts.disable(conn, username)
    click.echo(f"user {username} disabled; its sessions and tokens no longer work")


@user_group.command("reset-password")
@click.argument("username")
@PASSWORD_STDIN
@click.pass_context
@_one_line_errors
def user_reset_password(ctx: click.Context, username: str, password_stdin: bool) -> None:
    """Set a new password for USERNAME (asked for, or --password-stdin); its sessions end, failed logins go."""
    password = _read_password(password_stdin)
    with _accounts_connection(ctx) as conn:
        accounts.reset_password(conn, username, password)
    click.echo(f"password of {username} reset; its sessions have ended")


@user_group.group("token")
def token_group() -> None:
    """API tokens for scripts: ``Authorization: Bearer <token>``."""


@token_group.command("create")
@click.argument("username")
@click.option("--name", "token_name", required=True, help="What the token is for (used to revoke it).")
@click.option("--expires-days", type=int, help="The token stops working after this many days (default: never).")
@click.pass_context
@_one_line_errors
def token_create(ctx: click.Context, username: str, token_name: str, expires_days: int | None) -> None:
    """Create an API token acting as USERNAME. The token is printed once, alone on stdout; only its hash is kept."""
    with _accounts_connection(ctx) as conn:
        token = accounts.create_token(conn, username, name=token_name, expires_days=expires_days)
    click.echo(token)
    click.echo(f"token {token_name!r} for {username}: shown once, keep it safe (send it as "
               "'Authorization: Bearer <token>')", err=True)


@token_group.command("revoke")
@click.argument("username")
@click.option("--name", "token_name", required=True, help="The name given at `token create`.")
@click.pass_context
@_one_line_errors
def token_revoke(ctx: click.Context, username: str, token_name: str) -> None:
    """Revoke USERNAME's token named --name: it stops working at once."""
    with _accounts_connection(ctx) as conn:
        accounts.revoke_token(conn, username, name=token_name)
    click.echo(f"token {token_name!r} of {username} revoked")
