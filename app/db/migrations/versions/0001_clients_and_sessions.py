"""Clients (demographics, revision) and their recorded sessions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("gender", sa.String(1)),
        sa.Column("age", sa.SmallInteger),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("client_id", sa.BigInteger, sa.ForeignKey("clients.client_id"), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("session_date", sa.Date, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("products", sa.JSON),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("client_id", "session_id", name="uq_sessions_client_session"),
    )


def downgrade() -> None:
    op.drop_table("sessions")
    op.drop_table("clients")
