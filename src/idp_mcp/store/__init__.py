"""Persistence: SQLAlchemy tables, sessions, repositories and Alembic migrations."""
