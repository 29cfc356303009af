"""Renewals no care team could receive, and why: the Veteran asking for the draft is told.

Created 2026-11-30.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "messaging_0002"
down_revision: str | Sequence[str] | None = "messaging_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "renewals_without_care_team",
        sa.Column("renewal_id", sa.String(length=36), nullable=False),
        sa.Column("veteran_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("renewal_id"),
    )


def downgrade() -> None:
    op.drop_table("renewals_without_care_team")
