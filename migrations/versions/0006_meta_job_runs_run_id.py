"""Add meta_job_runs.run_id String DEFAULT toString(generateUUIDv4()): one id per job run, so runs can be correlated across logs.

Existing rows get an id, written once (MATERIALIZE COLUMN) so it does not
change between reads.  Databases built by the old SQL files have the column
as ``UUID DEFAULT generateUUIDv4()``: it is converted to String, values kept.
Downgrade drops the column and its ids.
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES = ["zakaz.meta_job_runs.run_id"]


def upgrade() -> None:
    op.add_column_if_not_exists("zakaz.meta_job_runs", "run_id String DEFAULT toString(generateUUIDv4())", after="job")
    op.modify_column("zakaz.meta_job_runs", "run_id String DEFAULT toString(generateUUIDv4())")
    # A mutation on a data table (never on the ledger); waited for so that
    # the revision is done when it says it is.
    op.run("ALTER TABLE zakaz.meta_job_runs MATERIALIZE COLUMN run_id SETTINGS mutations_sync = 2")


def downgrade() -> None:
    op.drop_column_if_exists("zakaz.meta_job_runs", "run_id")
