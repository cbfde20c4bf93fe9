"""Whole-city coverage in memory: streets and points loaded once per data version, then any radius in milliseconds.

A planner drags the radius slider and switches kinds; each position is a new question about every street in the
city. Asking PostGIS each time re-reads and re-projects every street and point (seconds on a city of 100,000
points). The engine instead holds the city as arrays, built once per data version and metric CRS and shared by every
question until the data changes:

- every street cut into its straight segments in the city's metric CRS, each with its geodesic length;
- every convenience point projected, with its kind and status, and snapped onto its nearest routable street;
- the street network as a sparse graph (scipy), and, on first use, which pieces of which street lie in each unit
  grid, subdistrict and community.

**One axis for every street.** A position on street ``i`` at fraction ``f`` of its length (in the metric CRS, as
``ST_LineLocatePoint`` measures it) is the number ``2·i + f``. Every street is a unit interval on one line, with a
gap between streets, so covered stretches, uncovered stretches and pieces inside an area are plain intervals, sorted
and merged with numpy over the whole city at once — no Python loop per street. Geodesic length is a piecewise
linear function ``G`` on that axis (cumulative geodesic length at every vertex): the length of any interval is
``G(b) - G(a)``, exact for straight segments to the spheroid (a segment's scale factor varies by under 1e-7 over
its length).

**Straight coverage** is exact: on a segment p0→p1, the stretch within r of a centre c solves
``|p0 + t·(p1 - p0) - c| ≤ r``. Which centres reach which segments comes from an STRtree of the qualifying points
(``dwithin``). Most segments at a useful radius lie wholly inside the circle of the point nearest to their middle;
that point and the farther of the segment's two ends from it are found once per kind set (nearest neighbours do
not depend on the radius), so a new radius settles those segments with one comparison and enumerates point–segment
pairs only for the rest. Polygonised buffers (what ``ST_Buffer`` + ``ST_Union`` does) are neither needed nor exact.

**Walking coverage** runs one multi-source Dijkstra (``scipy.sparse.csgraph``) from a virtual source joined to both
ends of every qualifying point's street at the cost of the access leg plus the walk along the street; an edge
(u, v) of length L is reachable on [0, r - d(u)] and [L - (r - d(v)), L], and around a point standing on it (DESIGN.md,
"Semantics of the queries"). The node distances do not depend on the radius below the search limit, so a whole
radius curve costs one search.

**Choice.** The alternative the issue names — per-segment distance profiles precomputed per kind, so that a radius is
a threshold — needs the lower envelope of one distance function per nearby point on every segment: exact envelopes
are complex to build and store, sampled ones are not exact. The interval engine is exact, its cost grows with the
segments not wholly covered (few at large radii, few points near each at small ones), and ``bench/
bench_coverage_engine.py`` measures it against the naive ``ST_Union`` query and the previous SQL implementation.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
import sqlalchemy as sa
from pyproj import Geod
from scipy import sparse
from scipy.sparse import csgraph
from sqlalchemy.engine import Connection

from geoservice.crs import metric_transformer
from geoservice.query import BBox
from geoservice.results_cache import data_version
from geoservice.spatial import metric_srid

_GEOD = Geod(ellps="WGS84")
ARTERIAL_CLASSES = frozenset({"motorway", "trunk", "primary", "secondary", "motorway_link", "trunk_link",
                              "primary_link", "secondary_link"})
"""Street classes of through traffic: no stall stands at their junctions or along them (siting candidates)."""
_ZERO_COST = 1e-9  # a sparse graph drops explicit zeros: a point standing on a node reaches it at (almost) no cost
_ENGINES_KEPT = 3
_SELECTIONS_KEPT = 16

Intervals = tuple[np.ndarray, np.ndarray]
"""(starts, ends) on the street axis: sorted by start, disjoint unless said otherwise."""

_STREETS = sa.text("""
    SELECT id, name, class, source, target, length_m, ST_AsBinary(geom) AS wkb FROM street ORDER BY id
""")
_POINTS = sa.text("SELECT id, kind, status, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM point ORDER BY id")
_LAYERS = {
    "grid": sa.text("SELECT code, name, ST_AsBinary(geom) FROM grid ORDER BY code"),
    "subdistrict": sa.text(
        "SELECT code, name, ST_AsBinary(geom) FROM subdistrict WHERE geom IS NOT NULL ORDER BY code"),
    "community": sa.text("SELECT code, name, ST_AsBinary(geom) FROM community WHERE geom IS NOT NULL ORDER BY code"),
    "district": sa.text("SELECT code, name, ST_AsBinary(geom) FROM district WHERE geom IS NOT NULL ORDER BY code"),
}


# -- the engine cache ------------------------------------------------------------------------------------------

_engines: OrderedDict[tuple, CoverageEngine] = OrderedDict()
_engines_lock = threading.Lock()
_loading: dict[tuple, threading.Lock] = {}


def engine_for(conn: Connection, *, metric_crs: str) -> CoverageEngine:
    """The engine of the city ``conn`` sees, loaded once per (database, data version, metric CRS) in this process.

    A connection inside a transaction that changed the data sees a new version (versions come from a sequence and are
    never reused), so it gets an engine of its own data; other connections keep theirs.
    """
    metric_srid(conn, metric_crs)  # the one check of a metric CRS, with its message
    # The database's oid, not only its name: a database dropped and made again under the same name starts its
    # versions again.
    database = conn.execute(sa.text("SELECT oid FROM pg_database WHERE datname = current_database()")).scalar_one()
    key = (conn.engine.url.render_as_string(hide_password=True), database, data_version(conn), metric_crs)
    with _engines_lock:
        if key in _engines:
            _engines.move_to_end(key)
            return _engines[key]
        loading = _loading.setdefault(key, threading.Lock())
    # One load per key: requests arriving while the city loads wait for it instead of loading it again.
    with loading:
        with _engines_lock:
            if key in _engines:
                return _engines[key]
        engine = CoverageEngine.load(conn, metric_crs=metric_crs)
        with _engines_lock:
            _engines[key] = engine
            _loading.pop(key, None)
            while len(_engines) > _ENGINES_KEPT:
                _engines.popitem(last=False)
    return engine


@contextmanager
def without_cyclic_gc() -> Iterator[None]:
    """Python's cycle collector paused while an answer of many small lists and dicts is built.

    The collector runs after every few hundred allocations and walks every container alive: building the features of
    tens of thousands of uncovered streets spent half its time there, for objects that form no cycles. Collection
    resumes afterwards (nothing is lost, only postponed); the state is restored as found, so nesting is harmless.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def forget_engines() -> None:
    """Drop every loaded engine (tests, and after a database is replaced under the same name)."""
    with _engines_lock:
        _engines.clear()


# -- interval algebra on the street axis --------------------------------------------------------------------

def merge(starts: np.ndarray, ends: np.ndarray) -> Intervals:
    """The union of closed intervals, as sorted disjoint intervals (touching ones joined)."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return np.empty(0), np.empty(0)
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    new = np.empty(len(starts), dtype=bool)
    new[0] = True
    new[1:] = starts[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(starts) - 1]
    return starts[first], reach[last]


def complement(covered: Intervals, n_streets: int) -> Intervals:
    """The parts of every street ``[2i, 2i + 1]`` outside ``covered`` (sorted disjoint, each within one street)."""
    starts, ends = covered
    street = np.floor(starts / 2).astype(np.int64)
    lo = 2.0 * np.arange(n_streets)
    gap_starts = [lo[np.setdiff1d(np.arange(n_streets), street)]]
    gap_ends = [gap_starts[0] + 1.0]
    if len(starts):
        first = np.r_[True, street[1:] != street[:-1]]
        last = np.r_[street[1:] != street[:-1], True]
        gap_starts += [2.0 * street[first], ends[~last], ends[last]]
        gap_ends += [starts[first], starts[1:][~first[1:]], 2.0 * street[last] + 1.0]
    a, b = np.concatenate(gap_starts), np.concatenate(gap_ends)
    keep = b > a
    order = np.argsort(a[keep], kind="stable")
    return a[keep][order], b[keep][order]


def intersect(x: Intervals, y: Intervals) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersections of ``x`` (any intervals) with ``y`` (sorted disjoint): (index into x, starts, ends)."""
    xs, xe = x
    ys, ye = y
    lo = np.searchsorted(ye, xs, side="right")
    hi = np.searchsorted(ys, xe, side="left")
    count = np.maximum(hi - lo, 0)
    which = np.repeat(np.arange(len(xs)), count)
    offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    k = np.repeat(lo, count) + offsets
    a = np.maximum(xs[which], ys[k])
    b = np.minimum(xe[which], ye[k])
    keep = b > a
    return which[keep], a[keep], b[keep]


# -- the answers --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AreaCover:
    """Street length and covered length in each area of a layer (geodesic metres)."""

    codes: list[str]
    names: list[str]
    street_m: np.ndarray
    covered_m: np.ndarray


@dataclass(frozen=True)
class SitingInstance:
    """A covering problem: the still-uncovered street pieces (in the area) and which candidate site covers which.

    Attributes:
        weights: geodesic metres of each elementary piece that some site would cover.
        incidence: (sites × pieces) boolean sparse matrix: site i covers piece j.
        covered_m: street length in the area covered now.
        total_m: street length in the area.
    """

    weights: np.ndarray
    incidence: sparse.csr_matrix
    covered_m: float
    total_m: float


@dataclass(frozen=True)
class _Selection:
    """The qualifying points of one kind set, with what does not depend on the radius."""

    index: np.ndarray            # indices into the engine's points
    tree: shapely.STRtree        # of their metric positions
    far_end_m: np.ndarray        # per segment: distance from the point nearest its middle to its farther end


class CoverageEngine:
    """The city's streets, points and network as arrays, for coverage questions at any radius and kind set."""

    def __init__(self, *, metric_crs: str, streets: dict, points: dict, layers: dict | None = None) -> None:
        self.metric_crs = metric_crs
        self._to_metric, self._to_wgs84 = metric_transformer(metric_crs)
        self.street_ids: np.ndarray = streets["id"]
        self.street_names: list = streets["name"]
        self.street_classes: list = streets["class"]
        self._build_streets(streets)
        self._build_points(points)
        self._layers_raw = layers or {}
        self._selections: OrderedDict[tuple, _Selection] = OrderedDict()
        self._piece_cache: dict[str, tuple] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, conn: Connection, *, metric_crs: str) -> CoverageEngine:
        """Read the city's streets and points through ``conn`` (its transaction's view of the data)."""
        rows = conn.execute(_STREETS).all()
        streets = {
            "id": np.array([r.id for r in rows], dtype=np.int64),
            "name": [r.name for r in rows], "class": [r[2] for r in rows],
            "source": np.array([-1 if r.source is None else r.source for r in rows], dtype=np.int64),
            "target": np.array([-1 if r.target is None else r.target for r in rows], dtype=np.int64),
            "length_m": np.array([r.length_m for r in rows], dtype=float),
            "geom": shapely.from_wkb([bytes(r.wkb) for r in rows]) if rows else np.empty(0, dtype=object),
        }
        rows = conn.execute(_POINTS).all()
        points = {
            "id": np.array([r.id for r in rows], dtype=np.int64),
            "kind": np.array([r.kind for r in rows], dtype=object),
            "status": np.array([r.status for r in rows], dtype=object),
            "lon": np.array([r.lon for r in rows], dtype=float), "lat": np.array([r.lat for r in rows], dtype=float),
        }
        layers = {name: conn.execute(statement).all() for name, statement in _LAYERS.items()}
        return cls(metric_crs=metric_crs, streets=streets, points=points, layers=layers)

    # -- building ----------------------------------------------------------------------------------------

    def _build_streets(self, streets: dict) -> None:
        lines = streets["geom"]
        self.n_streets = n = len(lines)
        coords, owner = shapely.get_coordinates(lines, return_index=True)
        lon, lat = coords[:, 0], coords[:, 1]
        x, y = self._to_metric.transform(lon, lat)
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        same = owner[1:] == owner[:-1]
        step_m = np.where(same, np.hypot(np.diff(x), np.diff(y)), 0.0)
        step_geo = np.zeros(len(step_m))
        if same.any():
            step_geo[same] = _GEOD.inv(lon[:-1][same], lat[:-1][same], lon[1:][same], lat[1:][same])[2]
        cum_m = np.r_[0.0, np.cumsum(step_m)]
        first_vertex = np.searchsorted(owner, np.arange(n))
        last_vertex = np.r_[first_vertex[1:] - 1, len(owner) - 1] if n else first_vertex
        self._first_vertex, self._last_vertex = first_vertex, last_vertex
        self.line_m = cum_m[last_vertex] - cum_m[first_vertex] if n else np.empty(0)
        along = cum_m - cum_m[first_vertex[owner]] if n else cum_m[:0]
        fraction = along / self.line_m[owner] if n else along
        fraction[last_vertex] = 1.0
        self.vertex_key = 2.0 * owner + fraction
        self.vertex_geo = np.r_[0.0, np.cumsum(step_geo)]
        self.vertex_x, self.vertex_y, self.vertex_lon, self.vertex_lat = x, y, lon, lat
        # Segments: vertex j → j + 1 of the same street.
        j = np.flatnonzero(same)
        self.seg_x0, self.seg_y0, self.seg_x1, self.seg_y1 = x[j], y[j], x[j + 1], y[j + 1]
        self.seg_k0, self.seg_k1 = self.vertex_key[j], self.vertex_key[j + 1]
        self.seg_lines = shapely.linestrings(np.stack([np.column_stack([x[j], y[j]]),
                                                       np.column_stack([x[j + 1], y[j + 1]])], axis=1)) \
            if len(j) else np.empty(0, dtype=object)
        self.seg_mid = shapely.points((x[j] + x[j + 1]) / 2, (y[j] + y[j + 1]) / 2) if len(j) else self.seg_lines
        self._street_lines_m = shapely.transform(lines, self._metric_xy) if n else lines
        self._street_lon_lat = (lon[first_vertex], lat[first_vertex], lon[last_vertex], lat[last_vertex]) if n \
            else (np.empty(0),) * 4
        self.source, self.target, self.length_m = streets["source"], streets["target"], streets["length_m"]

    def _metric_xy(self, coords: np.ndarray) -> np.ndarray:
        x, y = self._to_metric.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    def _build_points(self, points: dict) -> None:
        self.point_ids, self.point_kind, self.point_status = points["id"], points["kind"], points["status"]
        # Kinds and statuses as small integers: selecting 100,000 points by string takes tens of milliseconds.
        self.kind_names, self.point_kind_code = np.unique(points["kind"].astype(str), return_inverse=True)
        self._status_names, self._point_status_code = np.unique(points["status"].astype(str), return_inverse=True)
        self.point_lon, self.point_lat = points["lon"], points["lat"]
        px, py = self._to_metric.transform(points["lon"], points["lat"])
        self.point_x, self.point_y = np.asarray(px, dtype=float), np.asarray(py, dtype=float)

    # -- the street axis -----------------------------------------------------------------------------------

    def geodesic(self, keys: np.ndarray) -> np.ndarray:
        """Cumulative geodesic metres at positions of the street axis."""
        return np.interp(keys, self.vertex_key, self.vertex_geo)

    def lengths(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Geodesic metres of intervals of the street axis (each within one street)."""
        return self.geodesic(ends) - self.geodesic(starts)

    def per_street(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Geodesic metres of intervals, summed per street (index into the street arrays)."""
        street = np.floor(starts / 2).astype(np.int64)
        return np.bincount(street, weights=self.lengths(starts, ends), minlength=self.n_streets)

    def whole_streets(self) -> Intervals:
        """Every street as one interval."""
        lo = 2.0 * np.arange(self.n_streets)
        return lo, lo + 1.0

    # -- which points count --------------------------------------------------------------------------------

    def qualifying(self, kinds: tuple[str, ...], include_planned: bool = False) -> np.ndarray:
        """Indices of the points that count: open (and planned, for "what if") of one of ``kinds``."""
        statuses = ["open", "planned"] if include_planned else ["open"]
        kind_ok = np.isin(self.kind_names, list(kinds))[self.point_kind_code]
        status_ok = np.isin(self._status_names, statuses)[self._point_status_code]
        return np.flatnonzero(kind_ok & status_ok)

    def _selection(self, kinds: tuple[str, ...], include_planned: bool) -> _Selection:
        key = (tuple(sorted(kinds)), include_planned)
        with self._lock:
            if key in self._selections:
                self._selections.move_to_end(key)
                return self._selections[key]
        index = self.qualifying(kinds, include_planned)
        centres = shapely.points(self.point_x[index], self.point_y[index]) if len(index) else np.empty(0, object)
        tree = shapely.STRtree(centres)
        far = np.full(len(self.seg_x0), np.inf)
        if len(index) and len(far):
            _, nearest = tree.query_nearest(self.seg_mid, all_matches=False)
            cx, cy = self.point_x[index][nearest], self.point_y[index][nearest]
            far = np.maximum(np.hypot(self.seg_x0 - cx, self.seg_y0 - cy), np.hypot(self.seg_x1 - cx, self.seg_y1 - cy))
        selection = _Selection(index=index, tree=tree, far_end_m=far)
        with self._lock:
            self._selections[key] = selection
            while len(self._selections) > _SELECTIONS_KEPT:
                self._selections.popitem(last=False)
        return selection

    # -- straight -----------------------------------------------------------------------------------------

    def _circle_spans(self, seg: np.ndarray, cx: np.ndarray, cy: np.ndarray,
                      radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stretch of segment ``seg[k]`` within ``radius`` of centre ``(cx[k], cy[k])``, on the street axis.

        Returns (k of the pairs that meet, their starts, their ends).
        """
        x0, y0 = self.seg_x0[seg], self.seg_y0[seg]
        dx, dy = self.seg_x1[seg] - x0, self.seg_y1[seg] - y0
        fx, fy = x0 - cx, y0 - cy
        a = dx * dx + dy * dy
        b = 2 * (fx * dx + fy * dy)
        c = fx * fx + fy * fy - radius * radius
        disc = b * b - 4 * a * c
        ok = (disc >= 0) & (a > 0)
        root = np.sqrt(np.where(ok, disc, 0.0))
        safe = np.where(a > 0, 2 * a, 1.0)
        t0 = np.clip((-b - root) / safe, 0.0, 1.0)
        t1 = np.clip((-b + root) / safe, 0.0, 1.0)
        k0, k1 = self.seg_k0[seg], self.seg_k1[seg]
        starts, ends = k0 + t0 * (k1 - k0), k0 + t1 * (k1 - k0)
        return np.flatnonzero(ok), starts[ok], ends[ok]

    def straight_covered(self, kinds: tuple[str, ...], radius: float, include_planned: bool = False) -> Intervals:
        """The stretches of every street within ``radius`` (metric CRS) of a qualifying point, merged."""
        selection = self._selection(kinds, include_planned)
        if not len(selection.index):
            return np.empty(0), np.empty(0)
        whole = selection.far_end_m <= radius
        rest = np.flatnonzero(~whole)
        # Candidates by box (each segment's envelope grown by the radius), not GEOS ``dwithin``: the quadratic below
        # drops the centres whose circle misses the segment anyway, and boxes are several times faster to query.
        x0, x1 = self.seg_x0[rest], self.seg_x1[rest]
        y0, y1 = self.seg_y0[rest], self.seg_y1[rest]
        boxes = shapely.box(np.minimum(x0, x1) - radius, np.minimum(y0, y1) - radius,
                            np.maximum(x0, x1) + radius, np.maximum(y0, y1) + radius)
        into, found = selection.tree.query(boxes)
        return self._merge_straight(whole, rest[into], selection.index[found], radius)

    def _merge_straight(self, whole: np.ndarray, seg: np.ndarray, hit: np.ndarray, radius: float) -> Intervals:
        _, starts, ends = self._circle_spans(seg, self.point_x[hit], self.point_y[hit], radius)
        return merge(np.r_[self.seg_k0[whole], starts], np.r_[self.seg_k1[whole], ends])

    # -- walking ------------------------------------------------------------------------------------------

    @cached_property
    def _network(self) -> dict:
        """The routable streets as a graph (compact node numbers), and every point snapped onto its nearest edge."""
        routable = np.flatnonzero((self.source >= 0) & (self.target >= 0))
        nodes, ends = np.unique(np.r_[self.source[routable], self.target[routable]], return_inverse=True)
        u, v = ends[:len(routable)], ends[len(routable):]
        cost = self.length_m[routable]
        # Both directions, parallel edges reduced to the shortest (a sparse matrix would add them up).
        rows, cols, weights = np.r_[u, v], np.r_[v, u], np.r_[cost, cost]
        keep = rows != cols
        rows, cols, weights = _min_per_pair(rows[keep], cols[keep], weights[keep], len(nodes))
        snapped = self._snap(routable)
        return {"routable": routable, "n_nodes": len(nodes), "u": u, "v": v, "rows": rows, "cols": cols,
                "weights": weights, **snapped}

    def _snap(self, routable: np.ndarray) -> dict:
        """Every point onto its nearest routable edge (metric CRS) at its fraction, with its geodesic access leg."""
        n = len(self.point_ids)
        if not len(routable) or not n:
            return {"edge": np.zeros(n, dtype=np.int64), "fraction": np.zeros(n), "offset_m": np.full(n, np.inf)}
        lines = self._street_lines_m[routable]
        tree = shapely.STRtree(lines)
        spots = shapely.points(self.point_x, self.point_y)
        into, found = tree.query_nearest(spots, all_matches=False)
        edge = np.empty(n, dtype=np.int64)
        edge[into] = found  # index into `routable`
        fraction = shapely.line_locate_point(lines[edge], spots, normalized=True)
        foot = shapely.get_coordinates(shapely.line_interpolate_point(lines[edge], fraction, normalized=True))
        foot_lon, foot_lat = self._to_wgs84.transform(foot[:, 0], foot[:, 1])
        offset = _GEOD.inv(self.point_lon, self.point_lat, np.asarray(foot_lon), np.asarray(foot_lat))[2]
        return {"edge": edge, "fraction": np.asarray(fraction, dtype=float), "offset_m": np.asarray(offset)}

    def node_distances(self, sources: np.ndarray, limit: float) -> np.ndarray:
        """Walking metres from the nearest of ``sources`` (point indices) to every routing node, up to ``limit``."""
        net = self._network
        n = net["n_nodes"]
        edge = net["edge"][sources]
        street = net["routable"][edge]
        length, offset, fraction = self.length_m[street], net["offset_m"][sources], net["fraction"][sources]
        ends = np.r_[net["u"][edge], net["v"][edge]]
        costs = np.maximum(np.r_[offset + fraction * length, offset + (1 - fraction) * length], _ZERO_COST)
        best = np.full(n, np.inf)
        np.minimum.at(best, ends, costs)
        reached = np.flatnonzero(np.isfinite(best))
        graph = sparse.csr_matrix(
            (np.r_[net["weights"], best[reached]],
             (np.r_[net["rows"], np.full(len(reached), n)], np.r_[net["cols"], reached])), shape=(n + 1, n + 1))
        return csgraph.dijkstra(graph, directed=True, indices=n, limit=limit)[:n]

    def walk_covered(self, kinds: tuple[str, ...], radius: float, include_planned: bool = False,
                     distances: np.ndarray | None = None) -> Intervals:
        """The stretches of every street within ``radius`` along the network from a qualifying point, merged.

        ``distances`` (from :meth:`node_distances` with a limit ≥ ``radius``) may be passed to reuse one search.
        """
        sources = self.qualifying(kinds, include_planned)
        net = self._network
        if not len(sources) or not len(net["routable"]):
            return np.empty(0), np.empty(0)
        if distances is None:
            distances = self.node_distances(sources, radius)
        starts, ends = self._reach(net, distances[net["u"]], distances[net["v"]], net["routable"], radius)
        on_start, on_end = self._reach_on_edge(sources, radius)
        return merge(np.r_[starts, on_start], np.r_[ends, on_end])

    def _reach(self, net: dict, du: np.ndarray, dv: np.ndarray, street: np.ndarray, radius: float) -> Intervals:
        length = self.length_m[street]
        base = 2.0 * street
        from_u = du < radius
        from_v = dv < radius
        starts = np.r_[base[from_u], base[from_v] + np.maximum(0.0, 1 - (radius - dv[from_v]) / length[from_v])]
        ends = np.r_[base[from_u] + np.minimum(1.0, (radius - du[from_u]) / length[from_u]), base[from_v] + 1.0]
        return starts, ends

    def _reach_on_edge(self, sources: np.ndarray, radius: float) -> Intervals:
        """Around each source, along its own edge, as far as the radius less its access leg allows."""
        net = self._network
        offset = net["offset_m"][sources]
        near = offset < radius
        street = net["routable"][net["edge"][sources[near]]]
        fraction = net["fraction"][sources[near]]
        reach = (radius - offset[near]) / self.length_m[street]
        return 2.0 * street + np.maximum(0.0, fraction - reach), 2.0 * street + np.minimum(1.0, fraction + reach)

    def covered(self, *, mode: str, kinds: tuple[str, ...], radius: float, include_planned: bool = False) -> Intervals:
        """The covered stretches of every street (``straight`` or ``walk``), merged."""
        if mode == "walk":
            return self.walk_covered(kinds, radius, include_planned)
        return self.straight_covered(kinds, radius, include_planned)

    def covered_curve(self, *, mode: str, kinds: tuple[str, ...], radii: np.ndarray,
                      include_planned: bool = False) -> np.ndarray:
        """Covered geodesic metres of the whole city at each radius (one network search for all of them)."""
        out = np.zeros(len(radii))
        distances = None
        if mode == "walk":
            sources = self.qualifying(kinds, include_planned)
            if len(sources) and len(self._network["routable"]):
                distances = self.node_distances(sources, float(np.max(radii)))
        for i, radius in enumerate(radii):
            if mode == "walk":
                starts, ends = self.walk_covered(kinds, float(radius), include_planned, distances=distances)
            else:
                starts, ends = self.straight_covered(kinds, float(radius), include_planned)
            out[i] = self.lengths(starts, ends).sum()
        return out

    # -- areas: pieces of streets inside polygons -----------------------------------------------------------

    def pieces_in(self, polygons_lonlat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pieces of every street inside each polygon: (polygon index, starts, ends) on the street axis.

        A street on the boundary between two polygons lies in both. Fractions of a cut come from locating its ends on
        the street (``line_locate_point``), which assumes a street does not run over itself.
        """
        polygons = shapely.transform(polygons_lonlat, self._metric_xy)
        shapely.prepare(polygons)
        tree = shapely.STRtree(self._street_lines_m)
        which, street = tree.query(polygons, predicate="intersects")
        inside = shapely.covers(polygons[which], self._street_lines_m[street])
        poly = [which[inside]]
        starts, ends = [2.0 * street[inside]], [2.0 * street[inside] + 1.0]
        cut_poly, cut_street = which[~inside], street[~inside]
        if len(cut_poly):
            cuts = shapely.intersection(self._street_lines_m[cut_street], polygons[cut_poly])
            parts, owner = shapely.get_parts(cuts, return_index=True)
            lines = shapely.get_type_id(parts) == 1
            parts, owner = parts[lines], owner[lines]
            line = self._street_lines_m[cut_street[owner]]
            f0 = shapely.line_locate_point(line, shapely.get_point(parts, 0), normalized=True)
            f1 = shapely.line_locate_point(line, shapely.get_point(parts, -1), normalized=True)
            base = 2.0 * cut_street[owner]
            poly.append(cut_poly[owner])
            starts.append(base + np.minimum(f0, f1))
            ends.append(base + np.maximum(f0, f1))
        poly, starts, ends = np.concatenate(poly), np.concatenate(starts), np.concatenate(ends)
        keep = ends > starts
        return poly[keep], starts[keep], ends[keep]

    def layer(self, name: str) -> tuple[list[str], list[str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Codes, names and street pieces of a layer (``grid``, ``subdistrict``, ``community``, ``district``)."""
        with self._lock:
            if name in self._piece_cache:
                return self._piece_cache[name]
        rows = self._layers_raw.get(name, [])
        polygons = shapely.from_wkb([bytes(r[2]) for r in rows]) if rows else np.empty(0, dtype=object)
        pieces = self.pieces_in(polygons) if len(rows) and self.n_streets else (np.empty(0, np.int64),
                                                                                 np.empty(0), np.empty(0))
        answer = ([r[0] for r in rows], [r[1] for r in rows], pieces)
        with self._lock:
            self._piece_cache[name] = answer
        return answer

    def kept(self, key: tuple, compute):
        """``compute()``, kept with this engine under ``key`` (answers that depend on the data but not the radius)."""
        with self._lock:
            if key in self._piece_cache:
                return self._piece_cache[key]
        answer = compute()
        with self._lock:
            self._piece_cache[key] = answer
        return answer

    def covered_within(self, covered: Intervals, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Covered geodesic metres inside each interval ``[starts[k], ends[k]]``."""
        c_starts, c_ends = covered
        if not len(c_starts):
            return np.zeros(len(starts))
        cum = np.r_[0.0, np.cumsum(self.lengths(c_starts, c_ends))]

        def covered_before(keys: np.ndarray) -> np.ndarray:
            k = np.searchsorted(c_starts, keys, side="right") - 1
            inside = k >= 0
            partial = np.zeros(len(keys))
            kk = k[inside]
            partial[inside] = (self.geodesic(np.minimum(keys[inside], c_ends[kk])) - self.geodesic(c_starts[kk]))
            return cum[np.maximum(k, 0)] * inside + partial

        return covered_before(ends) - covered_before(starts)

    def area_cover(self, name: str, covered: Intervals) -> AreaCover:
        """Street and covered metres in every polygon of a layer."""
        codes, names, (poly, starts, ends) = self.layer(name)
        street_m = np.bincount(poly, weights=self.lengths(starts, ends), minlength=len(codes))
        covered_m = np.bincount(poly, weights=self.covered_within(covered, starts, ends), minlength=len(codes))
        return AreaCover(codes=codes, names=names, street_m=street_m, covered_m=covered_m)

    def points_in_layer(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(polygon index, point index) of every point inside (or on the edge of) each polygon of a layer."""
        key = f"points:{name}"
        with self._lock:
            if key in self._piece_cache:
                return self._piece_cache[key]
        rows = self._layers_raw.get(name, [])
        if not rows or not len(self.point_ids):
            answer = (np.empty(0, np.int64), np.empty(0, np.int64))
        else:
            polygons = shapely.from_wkb([bytes(r[2]) for r in rows])
            tree = shapely.STRtree(polygons)
            spots = shapely.points(self.point_lon, self.point_lat)
            point, poly = tree.query(spots, predicate="covered_by")
            answer = (poly, point)
        with self._lock:
            self._piece_cache[key] = answer
        return answer

    def area_pieces(self, *, bbox: BBox | None = None, district: str | None = None) -> Intervals | None:
        """The street pieces inside the bbox and/or the district (sorted disjoint), or None for the whole city."""
        pieces = None
        if district is not None:
            codes, _, (poly, starts, ends) = self.layer("district")
            if district not in codes:
                return np.empty(0), np.empty(0)  # a district without an outline holds no street
            mine = poly == codes.index(district)
            pieces = merge(starts[mine], ends[mine])
        if bbox is not None:
            if not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
                return np.empty(0), np.empty(0)  # a box without width or height holds no length of street
            boxed = self.clip_pieces(box_polygon(bbox))
            if pieces is None:
                return boxed
            _, starts, ends = intersect(boxed, pieces)
            pieces = merge(starts, ends)
        return pieces

    def clip_pieces(self, area_lonlat) -> Intervals:
        """The street pieces inside one area (a lon/lat polygon), sorted and disjoint."""
        _, starts, ends = self.pieces_in(np.array([area_lonlat], dtype=object))
        return merge(starts, ends)

    # -- geometry of intervals -------------------------------------------------------------------------------

    def interval_lines(self, starts: np.ndarray, ends: np.ndarray) -> list[list[list[float]]]:
        """Each interval of the street axis as a lon/lat line (its street's vertices between two cut points)."""
        if not len(starts):
            return []
        key = self.vertex_key
        lo = np.searchsorted(key, starts, side="right")
        hi = np.searchsorted(key, ends, side="left")
        inner = np.maximum(hi - lo, 0)
        ax, ay = np.interp(starts, key, self.vertex_x), np.interp(starts, key, self.vertex_y)
        bx, by = np.interp(ends, key, self.vertex_x), np.interp(ends, key, self.vertex_y)
        a_lon, a_lat = self._to_wgs84.transform(ax, ay)
        b_lon, b_lat = self._to_wgs84.transform(bx, by)
        a = np.round(np.column_stack([a_lon, a_lat]), 7).tolist()
        b = np.round(np.column_stack([b_lon, b_lat]), 7).tolist()
        vertices = self._vertex_list
        return [[a_k, *vertices[first:first + n], b_k]
                for a_k, first, n, b_k in zip(a, lo.tolist(), inner.tolist(), b, strict=True)]

    @cached_property
    def _vertex_list(self) -> list[list[float]]:
        """Every vertex as [lon, lat] to 7 decimals (about 1 cm), built once: slicing lists beats converting arrays."""
        return np.round(np.column_stack([self.vertex_lon, self.vertex_lat]), 7).tolist()

    # -- siting ---------------------------------------------------------------------------------------------

    def street_nodes(self) -> dict[str, np.ndarray]:
        """Every routing node (street end): lon, lat, degree (street ends meeting there), arterial (one meets there)."""
        routable = self._network["routable"]
        lon0, lat0, lon1, lat1 = (a[routable] for a in self._street_lon_lat)
        ids = np.r_[self.source[routable], self.target[routable]]
        arterial = np.tile(np.array([c in ARTERIAL_CLASSES for c in np.asarray(self.street_classes, object)[routable]],
                                    dtype=bool), 2)
        nodes, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        degree = np.bincount(inverse, minlength=len(nodes))
        touches_arterial = np.bincount(inverse, weights=arterial, minlength=len(nodes)) > 0
        lon, lat = np.r_[lon0, lon1][first], np.r_[lat0, lat1][first]
        return {"node": nodes, "lon": lon, "lat": lat, "degree": degree, "arterial": touches_arterial}

    def street_midpoints(self) -> dict[str, np.ndarray]:
        """The middle (by length) of every street: lon, lat, street id, class and whether it is arterial."""
        keys = 2.0 * np.arange(self.n_streets) + 0.5
        x, y = np.interp(keys, self.vertex_key, self.vertex_x), np.interp(keys, self.vertex_key, self.vertex_y)
        lon, lat = self._to_wgs84.transform(x, y)
        classes = np.asarray(self.street_classes, dtype=object)
        return {"lon": np.asarray(lon), "lat": np.asarray(lat), "street_id": self.street_ids, "class": classes,
                "arterial": np.array([c in ARTERIAL_CLASSES for c in classes], dtype=bool)}

    def site_spans(self, *, mode: str, radius: float, sites_lonlat: np.ndarray) -> tuple[np.ndarray, Intervals]:
        """What each candidate site would cover: (site index, (starts, ends)), not merged across sites."""
        sx, sy = self._to_metric.transform(sites_lonlat[:, 0], sites_lonlat[:, 1])
        sx, sy = np.asarray(sx, dtype=float), np.asarray(sy, dtype=float)
        if mode != "walk":
            tree = shapely.STRtree(self.seg_lines)
            site, seg = tree.query(shapely.points(sx, sy), predicate="dwithin", distance=radius)
            keep, starts, ends = self._circle_spans(seg, sx[site], sy[site], radius)
            return site[keep], (starts, ends)
        return self._walk_site_spans(sites_lonlat, sx, sy, radius)

    @cached_property
    def _node_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Metric position of every routing node (the first or last vertex of its streets)."""
        net = self._network
        routable, n = net["routable"], net["n_nodes"]
        x, y = np.empty(n), np.empty(n)
        first, last = self._first_vertex[routable], self._last_vertex[routable]
        x[net["u"]], y[net["u"]] = self.vertex_x[first], self.vertex_y[first]
        x[net["v"]], y[net["v"]] = self.vertex_x[last], self.vertex_y[last]
        return x, y

    @staticmethod
    def _site_groups(sx: np.ndarray, sy: np.ndarray, radius: float, chunk: int):
        """Sites in groups of neighbours (by square cells, at most ``chunk`` each), so each searches a small graph."""
        cell = max(1500.0, 3 * radius)
        cx, cy = np.floor(sx / cell).astype(np.int64), np.floor(sy / cell).astype(np.int64)
        order = np.lexsort((cy, cx))
        key = np.c_[cx[order], cy[order]]
        breaks = np.r_[0, np.flatnonzero(np.any(key[1:] != key[:-1], axis=1)) + 1, len(order)]
        for g0, g1 in zip(breaks[:-1], breaks[1:], strict=True):
            for lo in range(g0, g1, chunk):
                yield order[lo:min(lo + chunk, g1)]

    def _local_nodes(self, sx: np.ndarray, sy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """The routing nodes a walk of ``radius`` from these sites can reach at most (a box around them), numbered.

        A walk never leaves the disc of its length around its start, so the graph of these nodes answers exactly;
        the box has a margin for the metric CRS's scale error and the ellipsoid.
        """
        x, y = self._node_xy
        reach = radius * 1.01 + 10.0
        local = np.flatnonzero((x >= sx.min() - reach) & (x <= sx.max() + reach)
                               & (y >= sy.min() - reach) & (y <= sy.max() + reach))
        index_of = np.full(len(x), -1, dtype=np.int64)
        index_of[local] = np.arange(len(local))
        return local, index_of

    def _walk_site_spans(self, sites_lonlat, sx, sy, radius, chunk: int = 256) -> tuple[np.ndarray, Intervals]:
        net = self._network
        routable, n = net["routable"], net["n_nodes"]
        lines = self._street_lines_m[routable]
        spots = shapely.points(sx, sy)
        into, found = shapely.STRtree(lines).query_nearest(spots, all_matches=False)
        edge = np.empty(len(sx), dtype=np.int64)
        edge[into] = found
        fraction = shapely.line_locate_point(lines[edge], spots, normalized=True)
        foot = shapely.get_coordinates(shapely.line_interpolate_point(lines[edge], fraction, normalized=True))
        foot_lon, foot_lat = self._to_wgs84.transform(foot[:, 0], foot[:, 1])
        offset = _GEOD.inv(sites_lonlat[:, 0], sites_lonlat[:, 1], np.asarray(foot_lon), np.asarray(foot_lat))[2]
        street = routable[edge]
        length = self.length_m[street]
        # Node → the routable edges meeting there, as (edge, end is u).
        incident_edge = np.r_[np.arange(len(routable)), np.arange(len(routable))]
        incident_node = np.r_[net["u"], net["v"]]
        at_u = np.r_[np.ones(len(routable), bool), np.zeros(len(routable), bool)]
        order = np.argsort(incident_node, kind="stable")
        incident_edge, incident_node, at_u = incident_edge[order], incident_node[order], at_u[order]
        node_start = np.searchsorted(incident_node, np.arange(n + 1))
        site_out, starts_out, ends_out = [], [], []
        for idx in self._site_groups(sx, sy, radius, chunk):
            local, index_of = self._local_nodes(sx[idx], sy[idx], radius)
            m, n_local = len(idx), len(local)
            rows, cols = index_of[net["rows"]], index_of[net["cols"]]
            inside = (rows >= 0) & (cols >= 0)
            # Each site joins the ends of its edge (those inside the neighbourhood: the others are beyond reach).
            ends = np.r_[index_of[net["u"][edge[idx]]], index_of[net["v"][edge[idx]]]]
            leg = offset[idx]
            costs = np.r_[leg + fraction[idx] * length[idx], leg + (1 - fraction[idx]) * length[idx]]
            joined = ends >= 0
            # An edge whose two ends are one node (a loop) joins its site to that node twice: keep the shorter way.
            v_rows, v_cols, v_costs = _min_per_pair(n_local + np.tile(np.arange(m), 2)[joined], ends[joined],
                                                    costs[joined], n_local + m)
            graph = sparse.csr_matrix(
                (np.maximum(np.r_[net["weights"][inside], v_costs], _ZERO_COST),
                 (np.r_[rows[inside], v_rows], np.r_[cols[inside], v_cols])), shape=(n_local + m, n_local + m))
            dist = csgraph.dijkstra(graph, directed=True, indices=n_local + np.arange(m), limit=radius)[:, :n_local]
            site_k, node_local = np.nonzero(dist < radius)
            d, node = dist[site_k, node_local], local[node_local]
            count = node_start[node + 1] - node_start[node]
            pos = np.repeat(node_start[node], count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count,
                                                                                            count))
            site_e, d_e = np.repeat(site_k, count), np.repeat(d, count)
            e, from_u = incident_edge[pos], at_u[pos]
            st = routable[e]
            reach = (radius - d_e) / self.length_m[st]
            base = 2.0 * st
            starts_out.append(np.where(from_u, base, base + np.maximum(0.0, 1 - reach)))
            ends_out.append(np.where(from_u, base + np.minimum(1.0, reach), base + 1.0))
            site_out.append(idx[site_e])
        near = offset < radius
        reach = (radius - offset[near]) / length[near]
        base = 2.0 * street[near]
        site_out.append(np.flatnonzero(near))
        starts_out.append(base + np.maximum(0.0, fraction[near] - reach))
        ends_out.append(base + np.minimum(1.0, fraction[near] + reach))
        return np.concatenate(site_out), (np.concatenate(starts_out), np.concatenate(ends_out))

    def siting_instance(self, *, radius_m: float, kinds: tuple[str, ...], mode: str, sites_lonlat: np.ndarray,
                        include_planned: bool = False, district: str | None = None,
                        bbox: BBox | None = None) -> SitingInstance:
        """The covering problem of adding ``sites_lonlat`` to the qualifying points, within an area (or the city).

        ``district`` (a code) and ``bbox`` (lon/lat) limit the streets that count, as in ``uncovered_streets``; the
        caller checks them.

        The still-uncovered street (in the area) is cut at every end of every site's reach into elementary pieces;
        a site covers a piece wholly or not at all, so the newly covered length of any set of sites is the sum of
        the weights of the pieces it covers.
        """
        covered = self.covered(mode=mode, kinds=kinds, radius=radius_m, include_planned=include_planned)
        area = self.area_pieces(bbox=bbox, district=district)
        area = self.whole_streets() if area is None else area
        total_m = float(self.lengths(*area).sum())
        covered_m = float(self.covered_within(covered, *area).sum())
        _, u_starts, u_ends = intersect(complement(covered, self.n_streets), area)
        uncovered = merge(u_starts, u_ends)
        sites = np.asarray(sites_lonlat, dtype=float).reshape(-1, 2)
        if not len(sites) or not len(uncovered[0]):
            return SitingInstance(np.empty(0), sparse.csr_matrix((len(sites), 0), dtype=bool), covered_m, total_m)
        site, spans = self.site_spans(mode=mode, radius=radius_m, sites_lonlat=sites)
        which, starts, ends = intersect(spans, uncovered)
        site = site[which]
        cuts = np.unique(np.r_[starts, ends])
        first = np.searchsorted(cuts, starts)
        count = np.searchsorted(cuts, ends) - first
        piece = np.repeat(first, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
        owner = np.repeat(site, count)
        used, column = np.unique(piece, return_inverse=True)
        weights = self.lengths(cuts[used], cuts[used + 1])
        incidence = sparse.csr_matrix((np.ones(len(piece), dtype=bool), (owner, column)),
                                      shape=(len(sites), len(used)), dtype=bool)
        return SitingInstance(weights=weights, incidence=incidence, covered_m=covered_m, total_m=total_m)


def _min_per_pair(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n: int):
    """Reduce repeated (row, col) entries to their smallest weight."""
    if not len(rows):
        return rows, cols, weights
    key = rows.astype(np.int64) * (n + 1) + cols
    order = np.lexsort((weights, key))
    key, weights = key[order], weights[order]
    first = np.r_[True, key[1:] != key[:-1]]
    key, weights = key[first], weights[first]
    return key // (n + 1), key % (n + 1), weights


def box_polygon(bbox: BBox):
    """A lon/lat box as a polygon with its edges densified (so that it stays a box's outline in the metric CRS)."""
    return shapely.segmentize(shapely.box(*bbox), 0.001)
