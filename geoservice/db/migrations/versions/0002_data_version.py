"""A data version: one counter that every change to the city's data moves forward.

Revision ID: 0002
Revises: 0001

Answers computed from the whole city (grid coverage, gaps) are worth keeping while nothing has changed: on a city
of 100,000 points the grid coverage takes seconds, and the city map asks for it on every visit. A statement-level
trigger on each data table sets ``data_version.version`` to a new number in the same transaction as the change
(inserts, updates, deletes, TRUNCATE, COPY), so a cache keyed by the version can never serve an answer older than
the data it can see. The numbers come from a sequence, which never hands out a number twice, not even after a
rollback: an answer computed inside a transaction that is then rolled back is keyed by a number no committed
state will ever have.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("district", "subdistrict", "community", "squad", "grid", "street", "point")


def upgrade() -> None:
    op.execute("""
        CREATE SEQUENCE data_version_seq;
        CREATE TABLE data_version (
            id boolean PRIMARY KEY DEFAULT true CONSTRAINT data_version_one_row CHECK (id),
            version bigint NOT NULL DEFAULT nextval('data_version_seq')
        );
        INSERT INTO data_version DEFAULT VALUES;
        CREATE FUNCTION geoservice_bump_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE data_version SET version = nextval('data_version_seq');
            RETURN NULL;
        END $$;
    """)
    for table in TABLES:
        op.execute(f"""
            CREATE TRIGGER {table}_bump_data_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION geoservice_bump_data_version();
        """)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER {table}_bump_data_version ON {table}")
    op.execute("DROP FUNCTION geoservice_bump_data_version()")
    op.execute("DROP TABLE data_version")
    op.execute("DROP SEQUENCE data_version_seq")
