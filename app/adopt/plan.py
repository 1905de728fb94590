"""What adopt decides: the repair operations, the plan, the result, and why it refuses."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from app.errors import EXIT_CHECK, UsageError


class AdoptionRefused(UsageError):
    """Adoption cannot go on; nothing was changed."""


class AlreadyManaged(AdoptionRefused):
    """The database has a ledger: it is managed already."""


class NoMatchingRevision(AdoptionRefused):
    """The live schema matches no revision, or differs in ways no safe operation repairs."""

    exit_code = EXIT_CHECK  # the check failed; the input was fine


class DataLossRefused(AdoptionRefused):
    """The repair plan would lose data and ``allow_data_loss`` was not given."""


class PlanChanged(AdoptionRefused):
    """The database changed between the plan shown and the apply."""


@dataclass
class Operation:
    """One step of the planner (app.planner), with what it puts at stake."""

    kind: str      # create_table, add_column, modify_column, rebuild_table, create_view, ... (repairs._KINDS)
    target: str    # "db.table" or "db.table.column"
    reason: str    # the planner's one-line summary, with the table's row count
    statements: list[str]  # the SQL a clean run sends (offline rendering of ``calls``)
    calls: list = field(default_factory=list)  # app.planner.Call: what runs
    # What the operation drops: "db.table" or "db.table.column"; with the rows
    # holding such values now (counted when the plan is made).
    loses: list[str] = field(default_factory=list)
    rows_at_risk: int = 0
    rows: int | None = None  # rows of the table it changes (None: a view or a new table)
    risk_sql: list[str] = field(default_factory=list)
    # Columns whose type changes ("db.table.column" -> new type).  The content
    # check compares the values before, converted to it, with the values
    # after (a widening such as DateTime -> DateTime64 keeps every value but
    # prints it differently).
    converts_to: dict[str, str] = field(default_factory=dict)
    # A collapsing table rebuilt with another sorting key: what a reader sees
    # (FINAL) changes with the key, so its rows are compared as stored across
    # the step, and what a reader sees is measured again after it.
    rekeys: bool = False

    @property
    def loses_data(self) -> bool:
        return self.rows_at_risk > 0

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("risk_sql", "converts_to", "calls", "rekeys"):
            out.pop(key)
        out["loses_data"] = self.loses_data
        return out


@dataclass
class AdoptionPlan:
    url: str
    server_version: str
    chain_checksum: str
    head: str
    revision: str | None  # the revision stamped after the plan (fewest operations); None: refused
    objects: int          # managed-database objects in the live database
    # What the next revision would take instead (a few findings).
    blocked_at: dict[str, list[str]]
    differences: list[dict]   # live against the schema at ``revision``, annotated
    ahead: list[dict]         # objects/columns of later revisions already present
    operations: list[Operation]
    unmanaged: list[str]      # left untouched
    refusals: list[str]       # why it cannot be adopted (empty when it can)
    notes: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # revisions the upgrade will run
    # Operations each candidate revision needs (the choice); an interrupted
    # adoption being resumed: its ledger step and the content measured before it.
    candidates: dict[str, int] = field(default_factory=dict)
    resume: dict | None = None
    tables: dict[str, int] = field(default_factory=dict)  # row count of every managed table
    # Tables of clickhouse-migrations found ("db.table" -> applied files), imported as history.
    imported: dict[str, list[dict]] = field(default_factory=dict)
    empty_ledger: bool = False  # a ledger with no row (an adoption stopped before its first), reused

    @property
    def adoptable(self) -> bool:
        return self.revision is not None and not self.refusals

    @property
    def lossy_operations(self) -> list[Operation]:
        return [op for op in self.operations if op.loses_data]

    def signature(self) -> tuple:
        return (self.revision, tuple((op.kind, op.target, tuple(op.statements)) for op in self.operations),
                tuple(self.refusals))

    def to_dict(self) -> dict:
        return {
            "url": self.url, "server_version": self.server_version, "chain_checksum": self.chain_checksum,
            "head": self.head, "revision": self.revision, "adoptable": self.adoptable,
            "needs_allow_data_loss": bool(self.lossy_operations), "objects": self.objects,
            "blocked_at": self.blocked_at, "differences": self.differences, "ahead": self.ahead,
            "operations": [op.to_dict() for op in self.operations], "unmanaged": self.unmanaged,
            "refusals": self.refusals, "notes": self.notes, "pending": self.pending,
            "candidates": self.candidates, "tables": self.tables,
            "imported": {t: [{**e, "applied_at": str(e["applied_at"])} for e in entries]
                         for t, entries in self.imported.items()},
            "resuming": self.resume["step_id"] if self.resume else None,
            "resumed_after": ({k: self.resume[k] for k in ("steps_done", "steps_total")}
                              if self.resume else None),
        }


@dataclass
class AdoptionResult:
    plan: AdoptionPlan
    steps: list[dict]
    findings: list  # app.verify.Finding, from verify after the upgrade
    data_changes: list[str]  # tables whose content differs from before (should be empty)
    checked_tables: int
    # What the content check left out ("db.table" or "db.table.column"): what
    # the plan's operations drop or change, allowed with --allow-data-loss.
    unchecked: list[str] = field(default_factory=list)
    # Resumed: the content was measured when this run started, not before the
    # adoption, and ``earlier_losses`` are the losing steps its earlier,
    # interrupted run(s) began (app.adopt.planning._earlier_losses).
    resumed: bool = False
    earlier_losses: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not [f for f in self.findings if f.fatal] and not self.data_changes

    @property
    def allowed_losses(self) -> list[dict]:
        """Each operation that lost something (allowed), with what and in how many rows."""
        earlier = [{"operation": None, "target": ", ".join(loss["loses"]), "loses": list(loss["loses"]),
                    "rows": loss["rows"], "converted_to": None, "earlier_run": True,
                    "step": f"{loss['step']}: {loss['reason']}"} for loss in self.earlier_losses]
        return earlier + [{"operation": op.kind, "target": op.target, "loses": list(op.loses),
                           "rows": op.rows_at_risk, "converted_to": op.converts_to.get(op.target),
                           "earlier_run": False} for op in self.plan.lossy_operations]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "revision": self.plan.revision, "plan": self.plan.to_dict(),
            "steps": self.steps, "findings": [f.to_dict() for f in self.findings],
            "data_changes": self.data_changes, "checked_tables": self.checked_tables,
            "allowed_losses": self.allowed_losses, "checksums_without": self.unchecked,
            "compared_from": "resumed run" if self.resumed else "before adoption",
        }
