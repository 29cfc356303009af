"""The inbox indexed by when each event was processed, which retention deletes by.

Created 2026-11-29 23:57:58.714828.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "outbox_0002"
down_revision: str | Sequence[str] | None = "outbox_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_processed_events_processed_at"), ["processed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processed_events_processed_at"))
