"""Adopt a warehouse built by the old hand-written SQL files: plan it onto a revision, run the plan, stamp, upgrade.

Such databases have no ledger and each drifted its own way (warehouse.md,
"The pre-lockdown state").  Adoption is in three parts:

1. **Plan.**  The schema at every revision comes from a replay of the chain
   (app.replay, cached by the chain's checksum); the live schema is read
   once.  For each revision R that may be stamped (every revision up to R
   only shapes the schema; one that writes rows, access or checks is left
   to the upgrade) the schema planner (app.planner, the one behind
   ``new --autogenerate``) plans the live database into what R defines
   (app.adopt.targets: objects and columns of later revisions already
   there are kept as those revisions make them).  The revision needing the
   fewest operations is chosen, operations that lose something counting
   first.  The plan may create missing tables empty, add columns, convert
   types, and rebuild tables whose keys, partition, engine or key-column
   types differ (``rebuild_table``: new table, copy counted, swap).  What
   would lose values is counted per row (app.adopt.repairs) and needs
   ``allow_data_loss``; an object no plan can take (another table under a
   chain name, a change the planner refuses) refuses the adoption, named.

2. **Apply.**  Plan again (the database must not have changed since the plan
   was shown), measure every table's row count and content checksum, then
   run the plan step by step, each step a ``started`` row of one ledger step
   (direction ``adopt``): a failure is recorded as ``failed`` and
   ``upgrade`` refuses until ``adopt --apply`` resumes it, planning again
   from the database as it is (so what is done is not done again, and a
   rebuild stopped half-way is finished by rebuild_table's re-run rules).
   Then the stamp (status ``stamped``: ``alembic_version`` reads R),
   ``upgrade head``, ``verify``, and the content measured again over the
   columns that existed before, less what the plan's allowed losses drop or
   change (the result lists those losses with their rows, and the columns
   the checksums left out).

3. **Review.**  ``adoption_sql`` writes the whole plan as one SQL script: per
   table its rows and operations, then every statement (app.adopt.running
   renders the calls offline, as a revision's offline SQL is).

Unmanaged objects (integration tables) are never touched.

Modules: ``plan`` (operations, plan, result, refusals), ``targets`` (the
desired schema per revision), ``repairs`` (steps as operations, rows at
risk), ``running`` (calls online and offline), ``planning``, ``applying``,
``matching`` (the warehouse's objects; the old containment rule, as a report).
"""
from __future__ import annotations

from app.adopt.applying import AdoptionStepFailed, apply_adoption, explain_refusal
from app.adopt.matching import blocking_differences, warehouse_objects
from app.adopt.plan import (
    AdoptionPlan, AdoptionRefused, AdoptionResult, AlreadyManaged, DataLossRefused, NoMatchingRevision,
    Operation, PlanChanged,
)
from app.adopt.planning import plan_adoption
from app.adopt.running import adoption_sql
from app.replay import ChainStates, RevisionState, chain_checksum, linear_chain, revision_states

__all__ = [
    "AdoptionPlan", "AdoptionRefused", "AdoptionResult", "AdoptionStepFailed", "AlreadyManaged", "ChainStates", "DataLossRefused",
    "NoMatchingRevision", "Operation", "PlanChanged", "RevisionState", "adoption_sql", "apply_adoption", "blocking_differences",
    "chain_checksum", "explain_refusal", "linear_chain", "plan_adoption", "revision_states", "warehouse_objects",
]
