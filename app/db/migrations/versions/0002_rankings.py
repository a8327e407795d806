"""Rankings computed off the request path: each client's scores for one model version, date and revision.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rankings",
        sa.Column("client_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("version", sa.String, nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("scores", sa.LargeBinary, nullable=False),
        sa.Column("order", sa.LargeBinary, nullable=False),
        sa.Column("bought", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rankings")
