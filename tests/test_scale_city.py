"""The OGC clients and the browser against a 1,000,000-point city (opt-in: ``make test-scale``).

The suite's other tests run on the demo city (400 grids, a few thousand points). Here the same clients read a
generated city of a million points (``bench/scale_city.py``: 51,451 streets, 5,966 grids) served by gunicorn as in
production, and every answer is compared with plain SQL on that database. Deselected from ``make test`` (the city
takes about 4 minutes to generate the first time, and GDAL copies a million points); run with
``make test-scale`` or ``pytest -m scale``.
"""

from __future__ import annotations

import re
import subprocess

import pyogrio
import pytest
import sqlalchemy as sa

from bench.scale_city import NAME, POINTS, scale_city
from geoservice.db.embedded import EmbeddedCluster
from tests.conftest import serving

pytestmark = pytest.mark.scale

COLLECTIONS = {"districts": ("district", "code"), "subdistricts": ("subdistrict", "code"),
               "communities": ("community", "code"), "grids": ("grid", "code"), "streets": ("street", "id"),
               "points": ("point", "id")}


@pytest.fixture(scope="module")
def big_engine():
    engine = scale_city()
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def big_served(base_settings, big_engine):
    owner = big_engine.url.render_as_string(hide_password=False)
    app = owner if base_settings.database_url else EmbeddedCluster(base_settings).app_url(NAME)
    with serving({"DATABASE_URL": owner, "GEOSERVICE_APP_DATABASE_URL": app}, log_name="serve_scale.log") as base:
        yield base


def test_the_city_is_the_size_asked_for(big_engine):
    with big_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM point")).scalar_one() == POINTS


def test_ogrinfo_lists_the_six_collections(big_served):
    result = subprocess.run(["ogrinfo", "-ro", f"OAPIF:{big_served}/ogc"], capture_output=True, text=True,
                            timeout=300, check=True)
    assert re.findall(r"^\d+: (\w+) ", result.stdout, flags=re.M) == list(COLLECTIONS)


def test_ogr2ogr_copies_every_collection_through_the_next_links(big_served, big_engine, tmp_path):
    out = tmp_path / "city.gpkg"
    subprocess.run(["ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{big_served}/ogc", *COLLECTIONS],
                   capture_output=True, text=True, timeout=3000, check=True)
    with big_engine.connect() as conn:
        for collection, (table, key) in COLLECTIONS.items():
            copied = pyogrio.read_dataframe(out, layer=collection, read_geometry=False, columns=[key])
            public = " WHERE status <> 'planned'" if table == "point" else ""  # planned points are not public
            keys = conn.execute(sa.text(f"SELECT {key} FROM {table}{public} ORDER BY {key}")).scalars().all()
            assert sorted(copied[key].tolist()) == keys, collection


def test_gdal_filters_by_attribute_and_by_bbox(big_served, big_engine):
    with big_engine.connect() as conn:
        x, y = conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point ORDER BY id LIMIT 1")).one()
        bbox = (x - 0.004, y - 0.003, x + 0.004, y + 0.003)
        box = dict(zip("abcd", bbox, strict=True))
        # Exact comparisons: `&&` compares float4-rounded boxes and takes points a few centimetres outside.
        in_box = "status <> 'planned' AND ST_X(geom) BETWEEN :a AND :c AND ST_Y(geom) BETWEEN :b AND :d"
        inside = conn.execute(sa.text(f"SELECT id FROM point WHERE {in_box} ORDER BY id"), box).scalars().all()
        kiosks = conn.execute(sa.text(f"SELECT id FROM point WHERE kind = 'kiosk' AND {in_box} ORDER BY id"),
                              box).scalars().all()

    def features(*options: str) -> list[int]:
        result = subprocess.run(["ogrinfo", "-ro", "-q", f"OAPIF:{big_served}/ogc", "points", *options],
                                capture_output=True, text=True, timeout=300, check=True)
        return [int(i) for i in re.findall(r"^  id \(Integer\) = (\d+)$", result.stdout, flags=re.M)]

    assert 50 < len(inside) == len(features("-spat", *map(str, bbox)))
    assert features("-spat", *map(str, bbox)) == inside
    assert features("-spat", *map(str, bbox), "-where", "kind = 'kiosk'") == kiosks
