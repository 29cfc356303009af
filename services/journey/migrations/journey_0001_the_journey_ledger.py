"""The journey ledger: the renewals the journey service follows and their steps.

A step may be recorded before its renewal (no foreign key): the ledger reads its topics in no fixed
order.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "journey_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("journey",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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
        sa.Column("topic_owner", sa.String(length=8), nullable=True),
        sa.Column("refused_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("journey_steps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_journey_steps_recorded_at"), ["recorded_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_journey_steps_renewal_id"), ["renewal_id"], unique=False
        )

    op.create_table(
        "renewals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("veteran_id", sa.String(length=64), nullable=False),
        sa.Column("ehr", sa.String(length=16), nullable=False),
        sa.Column("cohort", sa.String(length=8), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stalled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stalled_step", sa.String(length=32), nullable=True),
        sa.Column("stalled_tool", sa.String(length=8), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_renewals_idempotency_key"), ["idempotency_key"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_renewals_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_renewals_veteran_id"), ["veteran_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_renewals_veteran_id"))
        batch_op.drop_index(batch_op.f("ix_renewals_status"))
        batch_op.drop_index(batch_op.f("ix_renewals_idempotency_key"))

    op.drop_table("renewals")
    with op.batch_alter_table("journey_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_journey_steps_renewal_id"))
        batch_op.drop_index(batch_op.f("ix_journey_steps_recorded_at"))

    op.drop_table("journey_steps")
