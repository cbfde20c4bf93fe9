"""Alembic environment: runs on the connection geoservice hands over (see geoservice.db.upgrade).

Each migration runs in a transaction of its own, committed before the next begins: a migration may then step out of
it (``op.get_context().autocommit_block()``) to build an index ``CONCURRENTLY``, and the locks a migration takes are
held for its own transaction only. The connection must therefore come with no transaction begun: inside the
caller's transaction Alembic would run every migration in that one transaction, where no concurrent build can run.
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through 'geoservice db upgrade', which supplies the connection")
if connection.in_transaction():
    raise RuntimeError("migrations run one transaction each: hand over a connection with no transaction begun "
                       "(engine.connect(), not engine.begin())")

context.configure(connection=connection, transactional_ddl=True, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
