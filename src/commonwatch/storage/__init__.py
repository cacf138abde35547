"""Persistence: SQLAlchemy 2 models, the engine, Alembic migrations, repositories.

Repositories never commit; the service that owns a transaction does.
"""
