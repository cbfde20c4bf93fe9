"""Alembic environment: runs on the connection geoservice hands over (see geoservice.db.upgrade)."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through 'geoservice db upgrade', which supplies the connection")

context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
