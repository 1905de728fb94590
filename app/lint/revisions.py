"""The revision files lint reads: their modules, statements, and lines to point a finding at."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from app import losses
from app.lint.statements import Statement


class Source:
    """A revision file's lines, for pointing a finding at a line."""

    def __init__(self, path: str):
        self.path = path
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        self.lines = text.splitlines()
        self.functions: dict[str, tuple[int, int]] = {}
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef):
                self.functions[node.name] = (node.lineno, node.end_lineno or node.lineno)

    def line(self, needles: Iterable[str], function: str | None = None) -> int:
        """Best effort: the first line naming one of ``needles`` (most specific
        first) inside ``function``, else anywhere in the file, else the line
        ``function`` starts at.  A revision often keeps its SQL in module
        constants (VIEW_SQL, TABLES), hence the whole-file fallback."""
        span = self.functions.get(function or "", (1, len(self.lines)))
        for needle in needles:
            if not needle:
                continue
            pattern = re.compile(r"(?<![\w.])" + re.escape(needle) + r"(?![\w])")
            for lo, hi in (span, (1, len(self.lines))):
                for n in range(lo, hi + 1):
                    if pattern.search(self.lines[n - 1]):
                        return n
        return span[0] if function in self.functions else 1


@dataclass
class Revision:
    id: str
    parents: tuple[str, ...]
    path: str
    module: Any
    source: Source
    statements: dict[str, list[Statement]] = field(default_factory=dict)
    # direction -> the ClickHouse operations (app.operations.definitions) the
    # step runs, as data: read where the SQL text would have to be parsed back.
    operations: dict[str, list] = field(default_factory=dict)

    @property
    def parent(self) -> str | None:
        """The first parent: a merge revision is rendered and reset along it."""
        return self.parents[0] if self.parents else None

    def declared(self, direction: str) -> list[str]:
        return losses.declared(self.module, direction)
