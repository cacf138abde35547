"""Alembic environment: migrations run on the engine the application hands over.

On SQLite, foreign keys are off while migrations run: changing a constraint there
means rebuilding the table, and dropping the old table must not cascade-delete the
rows that reference it. They are checked before the migrations commit. (The pragma
only takes effect outside a transaction, hence the commit before the migrations'.) A
migration that rebuilt a table asks for a VACUUM afterwards.
"""

from __future__ import annotations

from alembic import context

from commonwatch.storage.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=sqlite,
            )
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"the migration left rows whose references are missing: {broken[:5]}")
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
    if sqlite and context.config.attributes.pop("vacuum", False):
        # A migration rebuilt a table: the old one's pages are free space in the middle
        # of the file. VACUUM (outside a transaction) writes the file again without them:
        # about 7 s and the file's size again in free disk for 10^6 objects.
        connection.exec_driver_sql("VACUUM")
        connection.commit()
