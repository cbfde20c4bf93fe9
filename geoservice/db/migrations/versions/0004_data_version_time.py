"""When the city's data last changed, beside its version: the ``Last-Modified`` of every cached answer.

Revision ID: 0004
Revises: 0003

HTTP caches and browsers revalidate with ``If-None-Match`` (the data version is the entity tag) and, older ones,
with ``If-Modified-Since``. The second needs a time; the trigger that moves the version now stamps it in the same
statement. ``now()`` is the changing transaction's start: it never runs backwards between two committed versions by
more than the length of a transaction, and the version — not the time — decides whether an answer is fresh.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        ALTER TABLE data_version ADD COLUMN changed_at timestamptz NOT NULL DEFAULT now();
        CREATE OR REPLACE FUNCTION geoservice_bump_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE data_version SET version = nextval('data_version_seq'), changed_at = now();
            RETURN NULL;
        END $$;
    """)


def downgrade() -> None:
    op.execute("""
        CREATE OR REPLACE FUNCTION geoservice_bump_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE data_version SET version = nextval('data_version_seq');
            RETURN NULL;
        END $$;
        ALTER TABLE data_version DROP COLUMN changed_at;
    """)
