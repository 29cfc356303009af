"""The journey ledger, as create_all made it before migrations.

Created 2026-11-29 23:57:49.645153.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "renewal_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("renewal",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "renewals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("veteran_id", sa.String(length=64), nullable=False),
        sa.Column("prescription_id", sa.String(length=64), nullable=False),
        sa.Column("ehr", sa.String(length=16), nullable=False),
        sa.Column("cohort", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("open_key", sa.String(length=130), nullable=True),
        sa.Column("refusal", sa.String(length=64), nullable=True),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stalled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stalled_step", sa.String(length=32), nullable=True),
        sa.Column("stalled_tool", sa.String(length=8), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        sa.UniqueConstraint("open_key"),
    )
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_renewals_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_renewals_veteran_id"), ["veteran_id"], unique=False)

    op.create_table(
        "journey_steps",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("renewal_id", sa.String(length=36), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("tool", sa.String(length=8), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=True),
        sa.Column("detail", sa.String(length=1000), nullable=True),
        sa.Column("source_topic", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["renewal_id"],
            ["renewals.id"],
        ),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("journey_steps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_journey_steps_renewal_id"), ["renewal_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("journey_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_journey_steps_renewal_id"))

    op.drop_table("journey_steps")
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_renewals_veteran_id"))
        batch_op.drop_index(batch_op.f("ix_renewals_status"))

    op.drop_table("renewals")
