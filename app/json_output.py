"""The one JSON encoder of every ``--json`` output.

Results are dataclasses: one that knows its JSON shape says so with
``to_dict()``; any other is written field by field.  Anything else JSON has
no type for (a datetime, a Decimal) is written as its ``str()``, as
``json.dumps(default=str)`` did before, so the shapes tests pin stay put.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any


def _plain(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return str(value)


def dumps(data: Any) -> str:
    """``data`` as the indented JSON the CLI prints."""
    return json.dumps(data, indent=2, default=_plain)
