"""add notes.created_at

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notes", sa.Column("created_at", sa.DateTime(timezone=True),
                                     server_default=sa.func.now(), nullable=False))


def downgrade() -> None:
    op.drop_column("notes", "created_at")
