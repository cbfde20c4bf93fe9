"""The catalogue of the tables agrees with the live database, and every interface serves the tables it lists.

The database (made by the migrations) is the truth about the schema: every column of every data table is in the
catalogue with the same type, nullability, default, identity, generation, key and foreign key, and the geometry
type and SRID agree with PostGIS's ``geometry_columns``. The layers API, the OGC collections (and their OpenAPI
filters), the import/export kinds and the models all list the catalogue's tables, no more, no fewer.
"""

from __future__ import annotations

import csv
import re

import pytest
import sqlalchemy as sa

from geoservice import catalogue, models
from geoservice.ingest import KINDS, export_file
from geoservice.ingest.validate import PHONE

# Tables of the database that are deliberately not in the catalogue, and why.
NOT_CATALOGUED = {
    "alembic_version": "the migrations' own bookkeeping",
    "spatial_ref_sys": "PostGIS's coordinate systems",
    "data_version": "the counter the results cache is keyed by (migration 0002), not city data",
    "app_user": "accounts (geoservice.accounts), not city data",
    "user_point": "which points kiosk staff look after (geoservice.accounts)",
    "api_token": "API tokens (geoservice.accounts)",
    "login_failure": "failed logins, counted for the login limit (geoservice.accounts)",
    "audit_log": "the record of every change (geoservice.editing)",
}
TABLE_NAMES = list(catalogue.TABLES)


def database_columns(conn, table: str) -> dict[str, dict]:
    rows = conn.execute(sa.text("""
        SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS sql_type, NOT a.attnotnull AS nullable,
               a.attidentity <> '' AS identity, a.attgenerated <> '' AS generated,
               pg_get_expr(d.adbin, d.adrelid) AS expression
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = CAST(:table AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
    """), {"table": table}).mappings().all()
    return {row["name"]: dict(row) for row in rows}


def constraints(conn, table: str, kind: str) -> dict[str, str]:
    rows = conn.execute(sa.text(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = CAST(:table AS regclass) AND contype = :kind"), {"table": table, "kind": kind}).all()
    return dict(rows)


def squeezed(sql: str) -> str:
    """SQL without case, spaces, parentheses or casts of literals: how PostgreSQL prints it back varies."""
    sql = re.sub(r"'::[a-z \[\]]+", "'", sql.lower())
    return re.sub(r"[\s()]", "", sql)


def test_every_data_table_is_catalogued_or_deliberately_left_out(conn):
    tables = set(conn.execute(sa.text(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_type = 'BASE TABLE'")).scalars())
    assert tables - set(NOT_CATALOGUED) == set(catalogue.TABLES)


@pytest.mark.parametrize("table_name", TABLE_NAMES)
def test_columns_agree_with_the_database(conn, table_name):
    table = catalogue.TABLES[table_name]
    columns = database_columns(conn, table_name)
    geometry = [table.geometry.column] if table.geometry else []
    assert set(columns) == {p.name for p in table.columns} | set(geometry)
    for prop in table.columns:
        column = columns[prop.name]
        assert column["sql_type"] == prop.sql_type, prop.name
        assert column["identity"] == prop.identity, prop.name
        assert column["generated"] == (prop.generated is not None), prop.name
        if prop.generated:
            assert squeezed(column["expression"]) == squeezed(prop.generated), prop.name
            # PostgreSQL calls a generated column nullable; computed from a required geometry it never is null.
            assert column["nullable"] and not prop.nullable and not table.geometry.nullable, prop.name
        else:
            assert column["nullable"] == prop.nullable, prop.name
            expected_default = None if prop.default is None else squeezed(prop.default)
            assert (column["expression"] and squeezed(column["expression"])) == expected_default, prop.name


@pytest.mark.parametrize("table_name", TABLE_NAMES)
def test_keys_and_references_agree_with_the_database(conn, table_name):
    table = catalogue.TABLES[table_name]
    assert list(constraints(conn, table_name, "p").values()) == [f"PRIMARY KEY ({table.key})"]
    foreign = {re.match(r"FOREIGN KEY \((\w+)\) REFERENCES (\w+)\((\w+)\)", d).groups()
               for d in constraints(conn, table_name, "f").values()}
    assert foreign == {(p.name, *p.references.split(".")) for p in table.columns if p.references}
    unique = set(constraints(conn, table_name, "u").values())
    assert unique == {f"UNIQUE ({p.name})" for p in table.columns if p.unique}


@pytest.mark.parametrize("table_name", TABLE_NAMES)
def test_codes_vocabularies_and_phones_agree_with_the_database_checks(conn, table_name):
    table = catalogue.TABLES[table_name]
    checks = constraints(conn, table_name, "c")
    if table.code_digits:
        assert f"'{table.property_named('code').pattern}'" in checks[f"{table_name}_code_format"]
    if table.parent:
        prefix = f'left((code)::text, {table.parent.code_digits}) = ({table.parent_column})::text'
        assert prefix in checks[f"{table_name}_code_prefix"].replace('"', "")
    for prop in table.columns:
        if prop.enum:
            values = re.findall(r"'([a-z_]+)'", checks[f"{table_name}_{prop.name}_vocab"])
            assert set(values) == set(prop.enum), prop.name
        if prop.check == "phone":
            assert PHONE.pattern in checks[f"{table_name}_{prop.name}_format"], prop.name


@pytest.mark.parametrize("table_name", TABLE_NAMES)
def test_geometry_agrees_with_geometry_columns(conn, table_name):
    table = catalogue.TABLES[table_name]
    rows = conn.execute(sa.text(
        "SELECT f_geometry_column, type, srid, coord_dimension FROM geometry_columns "
        "WHERE f_table_schema = 'public' AND f_table_name = :t"), {"t": table_name}).all()
    if table.geometry is None:
        assert rows == []
        return
    geometry = table.geometry
    assert rows == [(geometry.column, geometry.type.upper(), geometry.srid, 2)]
    nullable = database_columns(conn, table_name)[geometry.column]["nullable"]
    assert nullable == geometry.nullable


@pytest.mark.parametrize("table_name", TABLE_NAMES)
def test_computed_properties_and_filters_run(conn, table_name):
    table = catalogue.TABLES[table_name]
    select = ", ".join(f'{p.select_sql} AS "{p.name}"' for p in table.properties)
    row = conn.execute(sa.text(f"SELECT {select} FROM {table_name} t ORDER BY t.{table.key} LIMIT 1")).mappings().one()
    assert list(row) == [p.name for p in table.properties]
    for flt in table.filters:
        if flt.enum:
            value = flt.enum[0]
        elif flt.pattern:
            value = "0" * int(re.search(r"\{(\d+)\}", flt.pattern).group(1))
        else:
            value = "x"
        assert flt.parse(value) == value
        conn.execute(sa.text(f"SELECT count(*) FROM {table_name} t WHERE {flt.condition}"), {"value": value})


def test_the_code_hierarchy_adds_three_digits_per_level():
    chain, table = [], catalogue.GRID
    while table is not None:
        chain.append((table.name, table.code_digits, table.parent_column))
        table = table.parent
    assert chain == [("grid", 15, "community_code"), ("community", 12, "subdistrict_code"),
                     ("subdistrict", 9, "district_code"), ("district", 6, None)]


def test_import_order_puts_every_table_after_those_it_references():
    order = catalogue.IMPORT_ORDER
    assert sorted(order) == sorted(catalogue.TABLES)
    for table in catalogue.TABLES.values():
        for prop in table.columns:
            if prop.references:
                assert order.index(prop.references.split(".")[0]) < order.index(table.name), prop.name
    assert models.TABLES == order


def test_tables_an_import_appends_to_are_referenced_by_nothing_and_numbered_by_the_database():
    for table in catalogue.TABLES.values():
        if table.upsert_key is None:
            assert catalogue.references_to(table.name) == ()
            assert table.property_named(table.key).identity
        else:
            assert table.property_named(table.upsert_key).unique or table.upsert_key == table.key


def test_the_layers_api_serves_the_catalogue_tables(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    parameters = {p["name"]: p for p in paths["/api/v1/layers/{layer}"]["get"]["parameters"]}
    assert parameters["layer"]["schema"]["enum"] == list(catalogue.FEATURE_TABLES)
    for layer, table in catalogue.FEATURE_TABLES.items():
        response = client.get(f"/api/v1/layers/{layer}", query_string={"limit": 3})
        assert response.status_code == 200, layer
        features = response.get_json()["features"]
        assert features, layer
        for feature in features:
            carried = {p.name for p in table.map_properties}
            assert carried <= set(feature["properties"]), layer
            assert feature["id"] == feature["properties"][table.key]
            assert feature["geometry"]["type"] == table.geometry.type
            if table is not catalogue.POINT:
                assert set(feature["properties"]) == carried, layer
    refused = client.get("/api/v1/layers/rivers").get_json()["description"]
    assert f"layer must be one of {', '.join(catalogue.FEATURE_TABLES)}" in refused


def test_the_ogc_collections_and_their_filters_are_the_catalogue_tables(client):
    listed = [c["id"] for c in client.get("/ogc/collections").get_json()["collections"]]
    assert listed == list(catalogue.FEATURE_TABLES)
    document = client.get("/ogc/api").get_json()
    schemas = document["components"]["schemas"]
    for cid, table in catalogue.FEATURE_TABLES.items():
        described = client.get(f"/ogc/collections/{cid}").get_json()
        assert described["title"] == f"{table.title_zh} {table.title_en}"
        assert described["keywords"] == [table.title_zh, table.title_en]
        parameters = document["paths"][f"/collections/{cid}/items"]["get"]["parameters"]
        filters = [p for p in parameters if "$ref" not in p]
        assert [(p["name"], p["schema"]) for p in filters] == [(f.name, f.schema) for f in table.filters]
        properties = schemas[f"{cid}Feature"]["properties"]["properties"]["properties"]
        assert properties == {p.name: p.schema for p in table.properties}


def test_the_import_kinds_and_the_models_are_the_catalogue_tables():
    assert list(KINDS) == [t.id for t in catalogue.TABLES.values()]
    for table in catalogue.TABLES.values():
        spec = KINDS[table.id]
        assert (spec.table, spec.key, spec.geometry) == (table.name, table.import_key,
                                                         table.geometry and table.geometry.type)
        assert [(f.name, f.type, f.required) for f in spec.fields] == [
            (p.name, p.check, p.required) for p in table.properties if p.check]
    assert set(models.Base.metadata.tables) == set(catalogue.TABLES)
    for table in catalogue.TABLES.values():
        model_table = models.Base.metadata.tables[table.name]
        geometry = [table.geometry.column] if table.geometry else []
        assert [c.name for c in model_table.columns] == [p.name for p in table.columns] + geometry
        assert [c.name for c in model_table.primary_key] == [table.key]


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_export_writes_the_catalogue_file_properties(conn, tmp_path, kind):
    table = KINDS[kind].catalogue_table
    path = tmp_path / f"{kind}.csv"
    export_file(conn, kind, path)
    with path.open(encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header == [p.name for p in table.file_properties] + (["wkt"] if table.geometry else [])
