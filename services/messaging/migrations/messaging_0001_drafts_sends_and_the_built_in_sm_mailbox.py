"""Drafts, sends and the built-in SM mailbox, as create_all made them before migrations.

Created 2026-11-29 23:57:49.747642.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "messaging_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("messaging",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "builtin_sm_messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=80), nullable=False),
        sa.Column("veteran_id", sa.String(length=64), nullable=False),
        sa.Column("draft_id", sa.String(length=36), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=50), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prescription_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("builtin_sm_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_builtin_sm_messages_draft_id"), ["draft_id"], unique=False
        )

    op.create_table(
        "message_drafts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("veteran_id", sa.String(length=64), nullable=False),
        sa.Column("renewal_id", sa.String(length=36), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=50), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=True),
        sa.Column("station_number", sa.String(length=8), nullable=True),
        sa.Column("ehr", sa.String(length=16), nullable=True),
        sa.Column("team_selection", sa.String(length=32), nullable=True),
        sa.Column("platform", sa.String(length=16), nullable=True),
        sa.Column("prescription_id", sa.String(length=64), nullable=True),
        sa.Column("care_systems", sa.JSON(), nullable=False),
        sa.Column("picker", sa.String(length=16), nullable=True),
        sa.Column("suggested_team_id", sa.Integer(), nullable=True),
        sa.Column("cohort", sa.String(length=8), nullable=False),
        sa.Column("traceparent", sa.String(length=55), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("renewal_id"),
    )
    with op.batch_alter_table("message_drafts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_drafts_veteran_id"), ["veteran_id"], unique=False
        )

    op.create_table(
        "message_sends",
        sa.Column("draft_id", sa.String(length=36), nullable=False),
        sa.Column("veteran_id", sa.String(length=64), nullable=False),
        sa.Column("renewal_id", sa.String(length=36), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=True),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("station_number", sa.String(length=8), nullable=False),
        sa.Column("ehr", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("team_selection", sa.String(length=32), nullable=True),
        sa.Column("platform", sa.String(length=16), nullable=True),
        sa.Column("cohort", sa.String(length=8), nullable=False),
        sa.Column("error_code", sa.String(length=16), nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=True),
        sa.Column("sent_event_id", sa.String(length=36), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("draft_id"),
    )
    with op.batch_alter_table("message_sends", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_sends_renewal_id"), ["renewal_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_message_sends_veteran_id"), ["veteran_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("message_sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_sends_veteran_id"))
        batch_op.drop_index(batch_op.f("ix_message_sends_renewal_id"))

    op.drop_table("message_sends")
    with op.batch_alter_table("message_drafts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_drafts_veteran_id"))

    op.drop_table("message_drafts")
    with op.batch_alter_table("builtin_sm_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_builtin_sm_messages_draft_id"))

    op.drop_table("builtin_sm_messages")
