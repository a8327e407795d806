"""Alembic migrations of the service database (app/db/engine.py runs them at start-up)."""
