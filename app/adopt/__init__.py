"""Adopt a warehouse built by the old hand-written SQL files: match it to a revision, repair, stamp, upgrade.

Such databases have no ledger and each drifted its own way (warehouse.md,
"The pre-lockdown state").  Adoption is in three parts:

1. **Match.**  The schema at every revision of the chain is computed by
   replaying the chain into a scratch embedded database (cached by the
   chain's checksum).  The live schema is read once and matched against
   them: the chosen revision R is the latest one the live database *fully
   contains*: every table, materialized view and column of the schema at R
   exists with the same type, DEFAULT, engine and keys (or already as a
   later revision defines them: a fix applied by hand).  Columns and objects
   of later revisions are allowed beside it; views are not part of the
   match (they hold no rows and are recreated when they differ).  A missing
   table below the newest revision the database holds tables of means it
   matches no revision at all: its rows cannot be accounted for.

2. **Repair plan.**  Everything that would keep ``upgrade head`` from
   producing the canonical schema is turned into one operation with a
   reason: the upgrade re-runs revisions R+1.. with IF NOT EXISTS, so an
   object or column of a later revision that is already there, but shaped
   differently, would silently stay wrong.  Operations keep every row
   (MODIFY COLUMN only along conversions that keep every value, ADD COLUMN,
   rebuilds with a row count check, views recreated); those that would lose
   data are listed with the rows at risk and need ``allow_data_loss``; a
   difference no operation covers refuses the adoption.

3. **Apply.**  Re-plan (the database must not have changed since the plan
   was shown), run the operations, create the ledger and write the adoption
   row (direction ``adopt``, status ``stamped``: a completed status, so
   ``alembic_version`` reads R), ``upgrade head``, ``verify``, and compare
   the content of every table (row counts and checksums over the columns
   that existed before) with what it was; the schema after the repairs is
   held against what the plan said they drop (``app.losses``).

Unmanaged objects (integration tables) are reported and never touched.

Modules: ``plan`` (operations, plan, result, refusals), ``matching`` (which
revision the database contains), ``repairs`` (the operations; type changes
judged by ``app.types``), ``planning`` and ``applying``.  The schema at every
revision comes from ``app.replay``.
"""
from __future__ import annotations

from app.adopt.applying import apply_adoption, explain_refusal
from app.adopt.matching import blocking_differences, warehouse_objects
from app.adopt.plan import (
    AdoptionPlan, AdoptionRefused, AdoptionResult, AlreadyManaged, DataLossRefused, NoMatchingRevision,
    Operation, PlanChanged,
)
from app.adopt.planning import plan_adoption
from app.replay import ChainStates, RevisionState, chain_checksum, linear_chain, revision_states

__all__ = [
    "AdoptionPlan", "AdoptionRefused", "AdoptionResult", "AlreadyManaged", "ChainStates", "DataLossRefused",
    "NoMatchingRevision", "Operation", "PlanChanged", "RevisionState", "apply_adoption", "blocking_differences",
    "chain_checksum", "explain_refusal", "linear_chain", "plan_adoption", "revision_states", "warehouse_objects",
]
