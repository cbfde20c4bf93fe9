"""Settings: read from the environment and an optional TOML file, validated with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoservice.config import ENV_NAMES, Settings, load_settings
from geoservice.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults():
    settings = load_settings(env={})
    assert settings.database_url is None
    assert settings.pg_dir == Path("var/pg")
    assert settings.metric_crs == "EPSG:4547"
    assert settings.basemap == "osm"
    assert settings.city_center == (113.826, 34.026)


def test_environment_and_file(tmp_path):
    config = tmp_path / "geoservice.toml"
    config.write_text('basemap = "none"\npg_port = 6000\ncity_center = [114.0, 35.0]\n')
    settings = load_settings(env={"GEOSERVICE_CONFIG": str(config), "GEOSERVICE_PG_PORT": "7000"})
    assert settings.basemap == "none"
    assert settings.pg_port == 7000  # the environment wins over the file
    assert settings.city_center == (114.0, 35.0)


@pytest.mark.parametrize(("env", "message"), [
    ({"GEOSERVICE_PG_PORT": "many"}, "GEOSERVICE_PG_PORT has an invalid value"),
    ({"GEOSERVICE_PG_PORT": "70000"}, "pg_port must be between 1 and 65535"),
    ({"GEOSERVICE_BASEMAP": "google"}, "basemap must be one of osm, tianditu, none"),
    ({"GEOSERVICE_BASEMAP": "tianditu"}, "needs GEOSERVICE_TIANDITU_KEY"),
    ({"GEOSERVICE_CITY_CENTER": "113.8"}, "GEOSERVICE_CITY_CENTER has an invalid value"),
    ({"GEOSERVICE_TRUSTED_PROXIES": "-1"}, "trusted_proxies must be between 0 and 10"),
    ({"GEOSERVICE_TRUSTED_PROXIES": "one"}, "GEOSERVICE_TRUSTED_PROXIES has an invalid value"),
    ({"GEOSERVICE_CONFIG": "/nonexistent/geoservice.toml"}, "cannot read GEOSERVICE_CONFIG"),
    ({"GEOSERVICE_PUBLIC_URL": "map.city.gov.cn"}, "public_url must be a scheme and host"),
    ({"GEOSERVICE_PUBLIC_URL": "https://map.city.gov.cn/geo"}, "public_url must be a scheme and host"),
    ({"GEOSERVICE_BACKUP_KEEP": "0"}, "backup_keep must be between 1 and 10000"),
    ({"GEOSERVICE_REPLICA_RETRY_S": "0"}, "replica_retry_s must be between 0 and 3600"),
    ({"GEOSERVICE_REPLICA_MAX_LAG_S": "-5"}, "replica_max_lag_s must be between 0 and 3600"),
])
def test_bad_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_replica_urls_are_separated_by_spaces_since_a_url_may_hold_commas():
    first = "postgresql://geoservice_app:pw@/geoservice?host=db1:5432&host=db2:5432&target_session_attrs=any"
    second = "postgresql://geoservice_app:pw@db3:5432,db4:5432/geoservice"
    settings = load_settings(env={"GEOSERVICE_REPLICA_URLS": f" {first}  {second} "})
    assert settings.replica_urls == (first, second)
    assert load_settings(env={}).replica_urls == ()


def test_unknown_setting_in_file_is_refused(tmp_path):
    config = tmp_path / "geoservice.toml"
    config.write_text('basemapp = "none"\n')
    with pytest.raises(ConfigError, match="unknown settings .*: basemapp"):
        load_settings(env={"GEOSERVICE_CONFIG": str(config)})


def test_every_setting_is_documented_in_config_module_and_readme():
    """Keep the docs honest: each setting's variable appears in the module docstring and in the README."""
    import geoservice.config

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert set(ENV_NAMES) == {f.name for f in Settings.__dataclass_fields__.values() if f.init}
    for var in ENV_NAMES.values():
        assert var in geoservice.config.__doc__, var
        assert var in readme, var
