"""audit checkpoints, and triggers that keep inserts to the chain continuous

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 04:08:35.014300
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64

# PostgreSQL: a row must continue the chain. The table is found through the trigger's own schema
# and name, never through the search_path of whoever inserts.
PG_CONTINUITY_FUNCTION = f"""
CREATE FUNCTION assay_audit_continues_chain() RETURNS trigger AS $$
DECLARE
    last_seq integer;
    last_hash text;
BEGIN
    EXECUTE format('SELECT seq, hash FROM %I.%I ORDER BY seq DESC LIMIT 1',
                   TG_TABLE_SCHEMA, TG_TABLE_NAME)
        INTO last_seq, last_hash;
    IF last_seq IS NULL THEN
        last_seq := 0;
        last_hash := '{GENESIS_HASH}';
    END IF;
    IF NEW.seq IS DISTINCT FROM last_seq + 1 OR NEW.prev_hash IS DISTINCT FROM last_hash THEN
        RAISE EXCEPTION 'audit_event must continue the chain: expected seq % with prev_hash %, '
            'got seq % with prev_hash %', last_seq + 1, last_hash, NEW.seq, NEW.prev_hash;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""

SQLITE_CONTINUITY_TRIGGER = f"""
CREATE TRIGGER audit_event_continues_chain BEFORE INSERT ON audit_event
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM audit_event)
  OR NEW.prev_hash IS NOT coalesce(
        (SELECT hash FROM audit_event ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}')
BEGIN
    SELECT RAISE(ABORT, 'audit_event must continue the chain: seq and prev_hash must follow');
END
"""


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("head", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("prev_checkpoint", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_checkpoint")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_checkpoint_hash")),
        sa.UniqueConstraint("prev_checkpoint", name=op.f("uq_audit_checkpoint_prev_checkpoint")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_CONTINUITY_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_event_continues_chain BEFORE INSERT ON audit_event "
            "FOR EACH ROW EXECUTE FUNCTION assay_audit_continues_chain()"
        )
        # Checkpoints are append-only too (the function of 0001 names the table it guards).
        op.execute(
            """
            CREATE FUNCTION assay_checkpoint_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_checkpoint is append-only: % is refused', TG_OP;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_checkpoint_no_update_delete BEFORE UPDATE OR DELETE "
            "ON audit_checkpoint FOR EACH ROW EXECUTE FUNCTION assay_checkpoint_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint "
            "FOR EACH STATEMENT EXECUTE FUNCTION assay_checkpoint_append_only()"
        )
    else:
        op.execute(SQLITE_CONTINUITY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_continues_chain ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS assay_audit_continues_chain()")
        op.execute("DROP TRIGGER IF EXISTS audit_checkpoint_no_truncate ON audit_checkpoint")
        op.execute("DROP TRIGGER IF EXISTS audit_checkpoint_no_update_delete ON audit_checkpoint")
        op.execute("DROP FUNCTION IF EXISTS assay_checkpoint_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_event_continues_chain")
    op.drop_table("audit_checkpoint")
