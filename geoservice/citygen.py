"""Synthetic cities: the Weidu demo city and city-scale data of any size for benchmarks.

One generator serves both. A city is laid out in a local metric frame (the configured projected CRS) as a
jittered lattice of intersections joined by street segments — arterial roads every few blocks, side streets in
between, some lanes removed and alleys (胡同) added — inside a district whose north-east corner is cut off by a
lake. The district is divided into subdistricts, communities and unit grids (15-digit codes, numbered west→east,
north→south inside each community). Convenience points are placed beside streets. Everything is deterministic
for a given :class:`CitySpec` (one ``random.Random(seed)``), and converted to WGS 84 at the end.

The demo spec also plants known defects (grid gaps, overlaps, a sliver, a district corner with no convenience
point) and reports them in ``City.defects`` so the planner tools have something true to find; data/README.md
lists them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon, box

from geoservice.crs import metric_crs_for, metric_transformer
from geoservice.vocab import KIND_CODES

# Index 0 is the westmost (southmost) line; the seeds' roads run through the middle of the city.
ARTERIALS_NS = ("光明路", "新兴路", "学院路", "建设路", "八一路", "劳动路", "文峰路", "莲城大道", "许继大道",
                "魏文路", "延安路", "天宝路", "颍昌大道")
ARTERIALS_EW = ("前进路", "永昌路", "三八路", "七一路", "湖滨路", "五一路", "塔东路", "兴业路", "魏都路",
                "青梅路", "东城路")
MINOR_PREFIXES = ("文化", "育才", "和平", "顺河", "建国", "兴华", "民主", "解放", "南关", "北关", "清虚", "平定",
                  "仓库", "后河", "槐树", "榆林", "柳树", "竹林", "桃园", "杏花", "丰收", "幸福", "团结", "光华",
                  "新华", "振兴", "康宁", "安居", "福寿", "长青", "春秋", "曹魏", "灞陵", "西湖", "运粮", "察院")
ORDINALS = ("", "一", "二", "三", "四", "五", "六", "七", "八", "九")
MINOR_SUFFIXES = ("街", "巷", "路")
SEED_MINOR_STREET = "东顺和街"
SUBDISTRICT_NAMES = ("文峰街道", "西大街道", "东大街道", "南关街道", "北大街道", "五一路街道", "七里店街道",
                     "高桥营街道", "丁庄街道", "魏北街道", "新兴街道", "半截河街道")
COMMUNITY_WORDS = ("文博", "春秋", "北海", "西湖", "魏风", "莲城", "清潩", "新兴", "天宝", "颍昌", "延安", "永兴",
                   "花园", "建设", "光明", "平安", "和谐", "幸福", "祥和", "福源", "丽景", "锦绣", "金桥", "银杏")
SQUAD_NAMES = ("文博中队", "西关中队", "东城中队", "南关中队", "北大中队", "五一中队", "七里店中队",
               "高桥中队", "丁庄中队", "魏北中队", "新兴中队", "半截河中队")
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗郑梁宋谢"
GIVEN = "建国军伟芳娜敏静丽强磊洋艳勇杰娟涛明超秀霞平刚桂英华"

VENDOR_AMENITIES = ("drinking_water", "umbrella", "tyre_pump", "cooling_oil", "towel")
KIOSK_AMENITIES = ("overnight", "tent", "power", "drinking_water", "hot_water", "phone_charging")


@dataclass(frozen=True, kw_only=True)
class CitySpec:
    """What city to generate. The defaults are the Weidu demo city."""

    seed: int = 411002
    district_code: str = "411002"
    district_name: str = "魏都区"
    center: tuple[float, float] = (113.826, 34.026)
    blocks_x: int = 48
    blocks_y: int = 40
    block_m: float = 200.0
    arterial_every: int = 4
    subdistricts: tuple[int, int] = (3, 2)
    communities: tuple[int, int] = (2, 2)
    grid_blocks: int = 2
    seed_subdistrict_grids: tuple[int, int] = (2, 3)
    lake_cut: float = 1.65
    removed_lane_share: float = 0.06
    alley_share: float = 0.12
    extra_points: int = 0
    plant_defects: bool = True

    @property
    def width_m(self) -> float:
        """East-west extent of the street lattice."""
        return self.blocks_x * self.block_m

    @property
    def height_m(self) -> float:
        """North-south extent of the street lattice."""
        return self.blocks_y * self.block_m


@dataclass
class City:
    """A generated city: rows ready for the database, geometries in WGS 84."""

    spec: CitySpec
    districts: list[dict] = field(default_factory=list)
    subdistricts: list[dict] = field(default_factory=list)
    communities: list[dict] = field(default_factory=list)
    squads: list[dict] = field(default_factory=list)
    grids: list[dict] = field(default_factory=list)
    streets: list[dict] = field(default_factory=list)
    points: list[dict] = field(default_factory=list)
    defects: list[dict] = field(default_factory=list)


def demo_spec() -> CitySpec:
    """The spec of the Weidu demo city (``geoservice demo load``)."""
    return CitySpec()


def scaled_spec(*, blocks: int, points: int, seed: int = 7) -> CitySpec:
    """A city of ``blocks`` × ``blocks`` street blocks with about ``points`` convenience points (benchmarks)."""
    return CitySpec(seed=seed, blocks_x=blocks, blocks_y=blocks, extra_points=max(0, points - 172),
                    subdistricts=(max(1, blocks // 16), max(1, blocks // 20)), plant_defects=False)


class _Frame:
    """The local metric frame: lattice metres ↔ projected CRS ↔ WGS 84."""

    def __init__(self, spec: CitySpec) -> None:
        # The city is laid out in metres in the zone chosen for its centre, as the settings would choose it.
        self.to_metric, self.to_wgs84 = metric_transformer(metric_crs_for(*spec.center))
        cx, cy = self.to_metric.transform(*spec.center)
        self.x0 = cx - spec.width_m / 2
        self.y0 = cy - spec.height_m / 2

    def wgs84(self, geom):
        """Lattice-frame geometry → WGS 84, coordinates rounded to 1e-7 degrees (about 1 cm)."""
        def convert(coords: np.ndarray) -> np.ndarray:
            lon, lat = self.to_wgs84.transform(coords[:, 0] + self.x0, coords[:, 1] + self.y0)
            return np.round(np.column_stack([lon, lat]), 7)

        return shapely.transform(geom, convert)


def generate_city(spec: CitySpec) -> City:
    """Generate the whole city described by ``spec``."""
    rng = random.Random(spec.seed)
    frame = _Frame(spec)
    city = City(spec)
    district = _district_outline(spec)
    nodes, edges = _street_lattice(spec, rng, district)
    grids_local = _admin_areas(spec, rng, city, district)
    if spec.plant_defects:
        _plant_grid_defects(spec, city, grids_local)
    _node_shared_boundaries(city, grids_local)
    _number_grids(city, grids_local, frame)
    no_point_zone = _no_point_zone(spec) if spec.plant_defects else None
    _points(spec, rng, city, nodes, edges, no_point_zone)
    for street in _street_rows(nodes, edges):
        street["geom"] = frame.wgs84(street["geom"])
        city.streets.append(street)
    for row in city.districts + city.subdistricts + city.communities:
        row["geom"] = shapely.MultiPolygon([frame.wgs84(row["geom"])])
    for row in city.points:
        row["geom"] = frame.wgs84(row["geom"])
    for defect in city.defects:
        defect["geom"] = frame.wgs84(defect["geom"])
    return city


# -- the district and its streets -------------------------------------------------------------------------

def _district_outline(spec: CitySpec) -> Polygon:
    """The lattice rectangle with a margin, minus the lake beyond the line x/w + y/h = lake_cut (north-east)."""
    margin = spec.block_m / 4
    w, h, c, t = spec.width_m, spec.height_m, spec.lake_cut, 10.0
    rect = box(-margin, -margin, w + margin, h + margin)
    # A big triangle whose long side lies on the lake shore line: everything south-west of it is land.
    land = Polygon([((c + t) * w, -t * h), (-t * w, (c + t) * h), (-t * w, -t * h)])
    return rect.intersection(land)


def _street_lattice(spec: CitySpec, rng: random.Random, district: Polygon):
    """Jittered intersections and the street segments between them (with alleys), as lattice-frame lines."""
    nodes: dict[tuple, tuple[float, float]] = {}
    jitter = spec.block_m * 0.08
    for i in range(spec.blocks_x + 1):
        for j in range(spec.blocks_y + 1):
            x = i * spec.block_m + rng.uniform(-jitter, jitter)
            y = j * spec.block_m + rng.uniform(-jitter, jitter)
            if district.contains(Point(x, y)):
                nodes[(i, j)] = (x, y)
    names = _line_names(spec, rng)
    edges: list[dict] = []
    for (i, j), _xy in sorted(nodes.items()):
        for di, dj, axis in ((1, 0, "ew"), (0, 1, "ns")):
            other = (i + di, j + dj)
            if other not in nodes:
                continue
            line_index = j if axis == "ew" else i
            along = i if axis == "ew" else j
            arterial = line_index % spec.arterial_every == 0
            if not arterial and rng.random() < spec.removed_lane_share:
                continue
            name, klass = names[(axis, line_index, along // spec.arterial_every)]
            edges.append({"a": (i, j), "b": other, "name": name, "class": klass})
    _add_alleys(spec, rng, nodes, edges)
    return nodes, _largest_component(nodes, edges)


def _line_names(spec: CitySpec, rng: random.Random) -> dict[tuple, tuple[str, str]]:
    """Name and class of every run of segments: arterials whole, side streets per block between arterials."""
    pool = [f"{p}{o}{s}" for p in MINOR_PREFIXES for o in ORDINALS for s in MINOR_SUFFIXES]
    rng.shuffle(pool)
    pool = [SEED_MINOR_STREET, *(n for n in pool if n != SEED_MINOR_STREET)]
    names: dict[tuple, tuple[str, str]] = {}
    runs_x = spec.blocks_x // spec.arterial_every + 1
    runs_y = spec.blocks_y // spec.arterial_every + 1
    taken = 0
    for axis, lines, runs, arterial_names in (("ns", spec.blocks_x, runs_y, ARTERIALS_NS),
                                              ("ew", spec.blocks_y, runs_x, ARTERIALS_EW)):
        for line in range(lines + 1):
            for run in range(runs):
                if line % spec.arterial_every == 0:
                    k = line // spec.arterial_every
                    name = arterial_names[k % len(arterial_names)]
                    if k >= len(arterial_names):
                        name = f"{name}{k // len(arterial_names) + 1}段"
                    klass = "primary" if k % 2 == 0 else "secondary"
                else:
                    name = pool[taken % len(pool)]
                    if taken >= len(pool):
                        name = f"{name}{taken // len(pool) + 1}"
                    taken += 1
                    klass = "tertiary" if line % spec.arterial_every == 2 else "residential"
                names[(axis, line, run)] = (name, klass)
    # The seed street 东顺和街 sits in the middle of the city, not at the lattice corner.
    mid = (("ew", spec.blocks_y // 2 + 1, runs_x // 2))
    first = ("ns", 1, 0)
    names[first], names[mid] = names[mid], names[first]
    return names


def _add_alleys(spec: CitySpec, rng: random.Random, nodes: dict, edges: list[dict]) -> None:
    """Split some side-street segments at their middle and hang a dead-end alley (胡同) off the new node."""
    kept = []
    for edge in edges:
        if edge["class"] != "residential" or rng.random() >= spec.alley_share:
            kept.append(edge)
            continue
        (ax, ay), (bx, by) = nodes[edge["a"]], nodes[edge["b"]]
        mid_key = ("m", *edge["a"], *edge["b"])
        nodes[mid_key] = ((ax + bx) / 2, (ay + by) / 2)
        kept.append({**edge, "b": mid_key})
        kept.append({**edge, "a": mid_key})
        dx, dy = bx - ax, by - ay
        length = math.hypot(dx, dy)
        side = rng.choice((-1, 1))
        depth = spec.block_m * rng.uniform(0.3, 0.45)
        end_key = ("e", *edge["a"], *edge["b"])
        mx, my = nodes[mid_key]
        nodes[end_key] = (mx - side * dy / length * depth, my + side * dx / length * depth)
        kept.append({"a": mid_key, "b": end_key, "name": f"{edge['name'][:2]}胡同", "class": "living_street"})
    edges[:] = kept


def _largest_component(nodes: dict, edges: list[dict]) -> list[dict]:
    """Keep only the edges of the largest connected part of the network (union-find)."""
    parent = {k: k for k in nodes}

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for edge in edges:
        parent[find(edge["a"])] = find(edge["b"])
    sizes: dict = {}
    for edge in edges:
        root = find(edge["a"])
        sizes[root] = sizes.get(root, 0) + 1
    biggest = max(sizes, key=sizes.get)
    return [e for e in edges if find(e["a"]) == biggest]


def _street_rows(nodes: dict, edges: list[dict]) -> Iterator[dict]:
    """Street rows with routing node ids (numbered in sorted node order, so deterministic)."""
    used = sorted({e["a"] for e in edges} | {e["b"] for e in edges}, key=repr)
    node_id = {key: n + 1 for n, key in enumerate(used)}
    for n, edge in enumerate(edges, start=1):
        yield {"id": n, "name": edge["name"], "class": edge["class"],
               "geom": LineString([nodes[edge["a"]], nodes[edge["b"]]]),
               "source": node_id[edge["a"]], "target": node_id[edge["b"]]}


# -- administrative areas and unit grids --------------------------------------------------------------------

def _cells(bounds: tuple[float, float, float, float], nx: int, ny: int) -> Iterator[tuple[int, int, Polygon]]:
    """Split ``bounds`` into nx × ny rectangles, yielding (row from north, column from west, rectangle)."""
    x0, y0, x1, y1 = bounds
    w, h = (x1 - x0) / nx, (y1 - y0) / ny
    for row in range(ny):
        for col in range(nx):
            top = y1 - row * h
            yield row, col, box(x0 + col * w, top - h, x0 + (col + 1) * w, top)


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def _mobile(rng: random.Random) -> str:
    return f"1{rng.choice('3589')}{rng.randrange(10**9):09d}"


def _admin_areas(spec: CitySpec, rng: random.Random, city: City, district: Polygon) -> list[dict]:
    """District, subdistricts, communities, squads; returns the unit-grid cells (lattice frame) per community."""
    city.districts.append({"code": spec.district_code, "name": spec.district_name, "geom": district})
    sx, sy = spec.subdistricts
    cx, cy = spec.communities
    grids: list[dict] = []
    minx, miny, maxx, maxy = district.bounds
    for s, (_row, _col, sub_rect) in enumerate(_cells((minx, miny, maxx, maxy), sx, sy), start=1):
        sub_geom = sub_rect.intersection(district)
        if sub_geom.is_empty:
            continue
        sub_code = f"{spec.district_code}{s:03d}"
        squad_id = s
        city.subdistricts.append({"code": sub_code, "district_code": spec.district_code,
                                  "name": SUBDISTRICT_NAMES[(s - 1) % len(SUBDISTRICT_NAMES)], "geom": sub_geom})
        city.squads.append({"id": squad_id, "name": _indexed(SQUAD_NAMES, s - 1, "中队"),
                            "leader": _person(rng), "phone": f"0374-{2300000 + rng.randrange(99999):07d}"})
        for c, (_r, _c, com_rect) in enumerate(_cells(sub_rect.bounds, cx, cy), start=1):
            com_geom = com_rect.intersection(district)
            if com_geom.is_empty or com_geom.area < 1000:
                continue
            com_code = f"{sub_code}{c:03d}"
            word = COMMUNITY_WORDS[(s * cx * cy + c) % len(COMMUNITY_WORDS)]
            city.communities.append({"code": com_code, "subdistrict_code": sub_code,
                                     "name": f"{word}社区", "geom": com_geom})
            grid_m = spec.grid_blocks * spec.block_m
            minx, miny, maxx, maxy = com_rect.bounds
            gx, gy = (spec.seed_subdistrict_grids if s == 1 else
                      (max(1, int((maxx - minx) // grid_m)), max(1, int((maxy - miny) // grid_m))))
            pieces = [(row, col, cell, cell.intersection(com_geom))
                      for row, col, cell in _cells(com_rect.bounds, int(gx), int(gy))]
            for row, col, cell, piece in _merge_slivers(pieces):
                grids.append({"community_code": com_code, "row": row, "col": col, "geom": piece,
                              "squad_id": squad_id, "officer_name": _person(rng),
                              "officer_phone": _mobile(rng), "cell": cell})
    return grids


def _merge_slivers(pieces: list[tuple], min_area: float = 1000.0) -> list[tuple]:
    """Fold grid pieces smaller than ``min_area`` (cut by the lake shore) into the neighbour they share most with.

    Dropping them instead would leave unplanned gaps between the grids and the district outline.
    """
    kept = [p for p in pieces if p[3].geom_type == "Polygon" and p[3].area >= min_area]
    for small in (p for p in pieces if p[3].geom_type == "Polygon" and 0 < p[3].area < min_area):
        shared = [(k, kept[k][3].boundary.intersection(small[3].boundary).length) for k in range(len(kept))]
        k, length = max(shared, key=lambda s: s[1], default=(None, 0.0))
        if k is not None and length > 0:
            row, col, cell, geom = kept[k]
            kept[k] = (row, col, cell, geom.union(small[3]))
    return kept


def _node_shared_boundaries(city: City, grids: list[dict]) -> None:
    """Give polygons that share a boundary the same vertices along it.

    A grid edge that runs past a neighbour's corner (a T-junction) would, after the projection to WGS 84 and
    rounding to 1e-7 degrees, open a thin sliver of false gap or overlap along the shared edge. Inserting each
    nearby corner into the edge keeps shared boundaries identical after any pointwise transform.
    """
    rows = city.districts + city.subdistricts + city.communities + grids
    corners = shapely.MultiPoint(np.unique(np.concatenate(
        [shapely.get_coordinates(r["geom"]) for r in rows]), axis=0))
    for row in rows:
        row["geom"] = shapely.snap(row["geom"], corners, 0.01)


def _indexed(names: tuple[str, ...], k: int, suffix: str) -> str:
    return names[k] if k < len(names) else f"第{k + 1}{suffix}"


def _number_grids(city: City, grids: list[dict], frame: _Frame) -> None:
    """Give each grid its 15-digit code: community code + sequence west→east, north→south."""
    by_community: dict[str, list[dict]] = {}
    for grid in grids:
        by_community.setdefault(grid["community_code"], []).append(grid)
    community_name = {c["code"]: c["name"] for c in city.communities}
    for com_code, members in by_community.items():
        members.sort(key=lambda g: (g["row"], g["col"]))
        for seq, grid in enumerate(members, start=1):
            grid["code"] = f"{com_code}{seq:03d}"
    for grid in grids:
        city.grids.append({
            "code": grid["code"], "community_code": grid["community_code"],
            "name": f"{community_name[grid['community_code']]}第{int(grid['code'][-3:])}网格",
            "squad_id": grid["squad_id"], "officer_name": grid["officer_name"],
            "officer_phone": grid["officer_phone"], "geom": frame.wgs84(grid["geom"]),
        })
    for defect in city.defects:
        members = defect.pop("_grid_ids")
        defect["grids"] = sorted(g["code"] for g in grids if id(g) in members)


def _plant_grid_defects(spec: CitySpec, city: City, grids: list[dict]) -> None:
    """Cut gaps out of a few grids, grow a few over their neighbours, and cut one sliver under 1 m²."""
    interior = [g for g in grids if g["geom"].equals(g["cell"]) and g["row"] > 0 and g["col"] > 0]
    step = max(1, len(interior) // 9)
    picks = interior[step // 2::step]
    for grid, (w, h) in zip(picks[:3], ((120, 80), (90, 150), (200, 60)), strict=False):
        _minx, _miny, maxx, maxy = grid["geom"].bounds
        hole = box(maxx - w, maxy - h, maxx, maxy)
        grid["geom"] = grid["geom"].difference(hole)
        city.defects.append({"type": "gap", "area_m2": w * h, "geom": hole, "_grid_ids": {id(grid)},
                             "note": f"{w}×{h} m cut from the north-east corner of the grid"})
    for grid in picks[3:5]:
        minx, miny, maxx, maxy = grid["geom"].bounds
        strip = box(maxx, miny, maxx + 40, maxy)
        neighbours = [g for g in grids if g is not grid and g["geom"].intersection(strip).area > 1]
        grid["geom"] = grid["geom"].union(strip)
        city.defects.append({"type": "overlap", "area_m2": 40 * (maxy - miny), "geom": strip,
                             "_grid_ids": {id(grid), *(id(g) for g in neighbours)},
                             "note": "40 m strip added along the east side, over the neighbouring grid"})
    if len(picks) > 5:
        grid = picks[5]
        minx, miny, _maxx, _maxy = grid["geom"].bounds
        notch = box(minx, miny, minx + 0.6, miny + 0.6)
        grid["geom"] = grid["geom"].difference(notch)
        city.defects.append({"type": "sliver_gap", "area_m2": 0.36, "geom": notch, "_grid_ids": {id(grid)},
                             "note": "0.6×0.6 m notch at the south-west corner: under the 1 m² sliver limit"})


# -- convenience points ------------------------------------------------------------------------------------

def _no_point_zone(spec: CitySpec) -> Polygon:
    """The south-west industrial corner kept free of points: streets inside it are far from every point."""
    return box(-spec.block_m, -spec.block_m, spec.block_m * 8, spec.block_m * 6)


def _points(spec: CitySpec, rng: random.Random, city: City, nodes: dict, edges: list[dict],
            no_point_zone: Polygon | None) -> None:
    """Place the seeds' convenience points beside streets, and any extra points the spec asks for."""
    # Points stay 700 m clear of the no-point zone so its inner streets are uncovered at the 500 m default.
    forbidden = no_point_zone.buffer(700) if no_point_zone is not None else None
    usable = [e for e in edges if forbidden is None or not forbidden.intersects(
        LineString([nodes[e["a"]], nodes[e["b"]]]))]
    by_name: dict[str, list[dict]] = {}
    for edge in usable:
        by_name.setdefault(edge["name"], []).append(edge)
    squads = [s["phone"] for s in city.squads]

    def beside(edge: dict) -> Point:
        (ax, ay), (bx, by) = nodes[edge["a"]], nodes[edge["b"]]
        t = rng.uniform(0.2, 0.8)
        dx, dy = bx - ax, by - ay
        length = math.hypot(dx, dy)
        off = rng.choice((-1, 1)) * rng.uniform(8, 18)
        return Point(ax + t * dx - off * dy / length, ay + t * dy + off * dx / length)

    def add(kind: str, name: str, edge: dict, **fields) -> None:
        city.points.append({"id": len(city.points) + 1, "name": name, "kind": kind,
                            "address": f"{spec.district_name}{edge['name']}", "geom": beside(edge),
                            "amenities": [], "phone": None, "opening_hours": None, "season": None,
                            "capacity": None, "occupancy": None, "status": "open", **fields})

    sanba = by_name.get("三八路") or usable
    add("rest_station", "三八路便民服务点", sanba[len(sanba) // 2],
        amenities=["drinking_water", "first_aid", "phone_charging", "seating"],
        phone=squads[0], opening_hours="Mo-Su 08:00-20:00")
    hubin = by_name.get("湖滨路") or usable
    add("job_board", "湖滨路零工信息公示牌", hubin[len(hubin) // 2], opening_hours="24/7")
    station = _edge_near(usable, nodes, (spec.width_m * 0.5, spec.height_m * 0.12))
    add("parking", "许昌站站前广场停车场", station, opening_hours="24/7", capacity=300,
        occupancy=rng.randrange(300))
    for n in range(8):
        edge = rng.choice(usable)
        cap = rng.randrange(6, 13)
        add("kiosk", f"城管执法岗亭（{edge['name']}）", edge, amenities=list(KIOSK_AMENITIES),
            phone=squads[n % len(squads)], opening_hours="24/7", capacity=cap, occupancy=rng.randrange(cap + 1))
    for _ in range(92):
        edge = rng.choice(usable)
        extras = [a for a in VENDOR_AMENITIES[1:] if rng.random() < 0.7]
        add("vendor_point", f"农副产品便民疏导点（{edge['name']}）", edge,
            amenities=["drinking_water", *extras], opening_hours="Mo-Su 05:30-21:30", season="05-15/10-15",
            phone=rng.choice(squads))
    for _ in range(12):
        edge = rng.choice(usable)
        overnight = rng.random() < 0.5
        cap = rng.randrange(4, 10) if overnight else None
        add("melon_point", f"瓜农便民点（{edge['name']}）", edge,
            amenities=["drinking_water", "shade", "umbrella", *(["overnight", "power"] if overnight else [])],
            season="06-01/09-15", opening_hours="Mo-Su 05:00-23:00", capacity=cap,
            occupancy=rng.randrange(cap + 1) if cap else None, phone=rng.choice(squads))
    for _ in range(5):
        edge = rng.choice(usable)
        add("rest_station", f"便民服务点（{edge['name']}）", edge,
            amenities=["drinking_water", "hot_water", "seating", "phone_charging"], opening_hours="Mo-Su 08:00-20:00",
            phone=rng.choice(squads))
    for k in range(5):
        edge = rng.choice(usable)
        add("night_market", f"{edge['name']}夜市外摆区", edge, opening_hours="Mo-Su 18:00-02:00",
            season="04-01/10-31", amenities=["seating", "toilet"] if k % 2 == 0 else ["seating"])
    for _ in range(2):
        edge = rng.choice(usable)
        add("job_board", f"{edge['name']}零工信息公示牌", edge, opening_hours="24/7")
    for _ in range(5):
        edge = rng.choice(usable)
        cap = rng.randrange(40, 200)
        add("parking", f"{edge['name']}便民停车场", edge, opening_hours="24/7", capacity=cap,
            occupancy=rng.randrange(cap + 1))
    for _ in range(40):
        edge = rng.choice(usable)
        add("toilet", f"{edge['name']}公厕", edge, amenities=["toilet"], opening_hours="Mo-Su 05:00-23:00")
    for _ in range(spec.extra_points):
        edge = rng.choice(usable)
        kind = rng.choice(KIND_CODES)
        add(kind, f"{edge['name']}{kind}", edge, amenities=["drinking_water"] if kind != "parking" else [])
    if no_point_zone is not None:
        inside = sorted({e["name"] for e in edges if no_point_zone.contains(
            LineString([nodes[e["a"]], nodes[e["b"]]]))})
        city.defects.append({"type": "uncovered_streets", "area_m2": no_point_zone.area, "geom": no_point_zone,
                             "grids": [], "streets": inside,
                             "note": "south-west industrial corner: no point within 700 m of it"})


def _edge_near(edges: list[dict], nodes: dict, xy: tuple[float, float]) -> dict:
    target = Point(xy)
    return min(edges, key=lambda e: LineString([nodes[e["a"]], nodes[e["b"]]]).distance(target))
