"""The ``geoservice`` command line: thin click commands that call the core, print, and set the exit code.

Every failure exits non-zero with one line on stderr that says what went wrong (never a traceback, never a
password).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from geoservice import db
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
    with engine.begin() as conn:
        before = db.current_revision(conn)
        granted = db.upgrade(conn)
        after = db.current_revision(conn)
    engine.dispose()
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
