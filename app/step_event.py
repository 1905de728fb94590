"""What a finished migration step reports to its caller (the CLI prints it, tests read it)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator


@dataclass
class StepEvent:
    revision: str
    direction: str  # upgrade, downgrade or stamp
    status: str  # applied or stamped
    message: str
    duration_ms: int
    statements: int
    skipped: list[str] = field(default_factory=list)
    heads: list[str] = field(default_factory=list)
    # The chain is loaded already: callers need not load it again (nor
    # reconnect) to say whether the database is now at head.
    at_head: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # Read as a mapping too (``event["revision"]``, ``{**event}``): callers
    # written when events were dicts keep working.
    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return list(self.__dataclass_fields__)

    def __contains__(self, key: object) -> bool:
        return key in self.__dataclass_fields__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)
