"""Why meds failed an accepted renewal: Kafka can never take its event (the outbox set it aside).

Created 2026-11-30.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "renewal_0002"
down_revision: str | Sequence[str] | None = "renewal_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_column("failure")
