"""What lint found: its rules, one finding per problem, and the report of a run."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

ERROR, WARNING = "error", "warning"

RULES: dict[str, str] = {
    "syntax": ERROR,
    "docstring": ERROR,
    "docstring-why": WARNING,
    "heads": ERROR,
    "offline-sql": ERROR,
    "replay-upgrade": ERROR,
    "replay-downgrade": ERROR,
    "downgrade-restores": ERROR,
    "view-order": ERROR,
    "view-reference": ERROR,
    "view-column-change": ERROR,
    "nondeterministic-key": ERROR,
    "destructive-drop": ERROR,
    "destructive-narrowing": ERROR,
    "destructive-recreate": ERROR,
    "destructive-ttl": ERROR,
    # A warning: whether rows merge depends on them, and rebuild_table counts
    # them before it copies anything and refuses unless --allow-data-loss.
    "destructive-merge": WARNING,
    "loss-declaration": WARNING,
    "create-if-not-exists": WARNING,
    "drop-if-exists": WARNING,
    "rerun-data": ERROR,
    "grant-unknown-object": ERROR,
    "mv-current-time": WARNING,
    "mv-replacing-aggregate": WARNING,
}


@dataclass(frozen=True)
class Finding:
    rule: str
    revision: str
    line: int  # in the revision file; best effort (see Source.line)
    message: str
    path: str = ""

    @property
    def severity(self) -> str:
        return RULES[self.rule]

    def __str__(self) -> str:
        where = f"{os.path.basename(self.path)}:{self.line}" if self.path else self.revision
        return f"{where}: {self.severity} [{self.rule}] {self.message}"

    def to_dict(self) -> dict:
        return {"rule": self.rule, "severity": self.severity, "revision": self.revision,
                "line": self.line, "path": self.path, "message": self.message}


@dataclass
class LintReport:
    revisions: list[str]
    findings: list[Finding] = field(default_factory=list)
    not_replayed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "revisions": self.revisions,
            "errors": len(self.errors), "warnings": len(self.warnings),
            "findings": [f.to_dict() for f in self.findings],
            "not_replayed": self.not_replayed, "seconds": round(self.seconds, 3),
        }
