"""The metric CRS belongs to the city: chosen from its centre, checked against its area of use, shown and passed.

Expected zones are written out by hand from the EPSG registry (CGCS2000 3° Gauss–Krüger CM 114E is EPSG:4547, WGS 84
/ UTM zone 35N is EPSG:32635, …), and the scale errors are checked with pyproj's own factors, not our formula.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pyproj import CRS, Proj

from geoservice import crs
from geoservice.app import create_app
from geoservice.config import load_settings
from geoservice.errors import ConfigError, InvalidParameter
from tests.conftest import ROOT

CITIES = [
    # (name, lon, lat, the zone a surveyor would pick)
    ("Xuchang", 113.826, 34.026, "EPSG:4547"),     # CGCS2000 3° GK CM 114E
    ("Beijing", 116.40, 39.90, "EPSG:4548"),       # CM 117E
    ("Urumqi", 87.62, 43.83, "EPSG:4538"),         # CM 87E
    ("Helsinki", 24.94, 60.17, "EPSG:32635"),      # UTM 35N
    ("New York", -74.00, 40.71, "EPSG:32618"),     # UTM 18N
    ("Sydney", 151.21, -33.87, "EPSG:32756"),      # UTM 56S
    ("Ulaanbaatar", 106.92, 47.92, "EPSG:32648"),  # UTM 48N: not China, though within the GK longitudes
    ("Quito", -78.47, -0.18, "EPSG:32717"),        # UTM 17S
]


@pytest.mark.parametrize(("name", "lon", "lat", "expected"), CITIES, ids=[c[0] for c in CITIES])
def test_the_zone_is_chosen_from_the_city_centre(name, lon, lat, expected):
    chosen = crs.metric_crs_for(lon, lat)
    assert chosen == expected
    west, south, east, north = CRS(chosen).area_of_use.bounds
    assert west <= lon <= east and south <= lat <= north
    # Within its zone a length is within 0.1 % of the ellipsoid's (pyproj's factors at the centre).
    assert abs(Proj(CRS(chosen)).get_factors(lon, lat).meridional_scale - 1) < 1e-3
    settings = load_settings(env={"GEOSERVICE_CITY_CENTER": f"{lon},{lat}"})
    assert settings.metric_crs == expected and settings.metric_crs_chosen


def test_a_new_city_centre_gets_its_own_zone_unless_one_was_configured():
    chosen = load_settings(env={})
    assert chosen.replace(city_center=(24.94, 60.17)).metric_crs == "EPSG:32635"
    configured = load_settings(env={"GEOSERVICE_CITY_CENTER": "24.94,60.17", "GEOSERVICE_METRIC_CRS": "EPSG:3067"})
    assert configured.metric_crs == "EPSG:3067" and not configured.metric_crs_chosen
    assert configured.replace(city_center=(25.0, 60.2)).metric_crs == "EPSG:3067"


def test_a_configured_crs_outside_its_area_of_use_is_refused_naming_the_right_zone():
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"GEOSERVICE_CITY_CENTER": "24.94,60.17", "GEOSERVICE_METRIC_CRS": "EPSG:4547"})
    message = str(refused.value)
    assert "EPSG:4547" in message and "EPSG:32635" in message and "GEOSERVICE_CITY_CENTER" in message
    # The message says how far off lengths would be: pyproj's own scale factor of EPSG:4547 at Helsinki.
    scale = Proj(CRS("EPSG:4547")).get_factors(24.94, 60.17).meridional_scale
    assert f"{100 * (scale - 1):+.1f} %" in message
    assert scale > 1.1


@pytest.mark.parametrize(("value", "message"), [
    ("EPSG:4326", "not a projected CRS in metres"),
    ("EPSG:999999", "not a CRS pyproj knows"),
    ("utm", "EPSG:<code>"),
])
def test_a_crs_that_is_not_metric_is_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env={"GEOSERVICE_METRIC_CRS": value})


def test_the_app_refuses_to_start_with_a_centre_outside_the_configured_crs(settings):
    with pytest.raises(ConfigError, match="EPSG:32635"):
        create_app(settings.replace(city_center=(24.94, 60.17), metric_crs="EPSG:4547"))


def test_the_cli_refuses_in_one_line():
    env = {**os.environ, "GEOSERVICE_CITY_CENTER": "24.94,60.17", "GEOSERVICE_METRIC_CRS": "EPSG:4547"}
    result = subprocess.run([sys.executable, "-m", "geoservice", "db", "status"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "EPSG:32635" in lines[0], result.stderr


def test_an_import_for_a_city_outside_the_crs_is_refused(conn, tmp_path):
    from geoservice.ingest import ImportOptions, import_file

    path = tmp_path / "p.csv"
    path.write_text("name,kind,lon,lat\nkiosk,kiosk,24.94,60.17\n", encoding="utf-8")
    options = ImportOptions(city_center=(24.94, 60.17), radius_km=20, metric_crs="EPSG:4547")
    with pytest.raises(InvalidParameter, match="Use EPSG:32635"):
        import_file(conn, "points", path, options=options)


def test_healthz_and_db_status_show_the_metric_crs(client, settings):
    body = client.get("/healthz").get_json()
    assert body["metric_crs"]["code"] == "EPSG:4547"
    assert body["metric_crs"]["name"] == "CGCS2000 / 3-degree Gauss-Kruger CM 114E"
    assert body["metric_crs"]["chosen_from_city_center"] is True
    env = {**os.environ, "DATABASE_URL": settings.database_url}
    result = subprocess.run([sys.executable, "-m", "geoservice", "db", "status"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "metric CRS EPSG:4547 (CGCS2000 / 3-degree Gauss-Kruger CM 114E), chosen from the city centre" \
        in result.stdout
