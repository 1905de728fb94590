"""A plan (app.planner) written out as a revision file that reads like a hand-written one.

Pure text: the docstring lists each change and leaves the Why line to the
author; ``DOWNGRADE_LOSES`` (and ``UPGRADE_LOSES`` when the upgrade was
allowed to lose something) come from the plan, and the docstring says how
each is lost (dropped, narrowed, past a TTL); ``upgrade()`` and
``downgrade()`` call the ClickHouse operations (app.operations.definitions)
with the arguments a person would type, column lists and SELECTs as indented
triple-quoted blocks like revisions 0008 and 0009.
"""
from __future__ import annotations

import re

from app.planner import Call, Plan, Step

_WIDTH = 110


def render_revision(plan: Plan, *, message: str, revision: str, down_revision: str | None) -> str:
    """The text of a revision file for ``plan``; ``plan`` must not be empty ("No changes" is the caller's)."""
    if plan.empty:
        raise ValueError("an empty plan makes no revision")
    out = [f'"""{_docstring(_one_line(message))}', ""]
    out += [_docstring(f"- {change}") for change in plan.changes]
    out += ["", "Why: TODO say why, in a sentence or two (the changelog line).",
            _docstring(_downgrade_line(plan)), '"""',
            "from alembic import op", "",
            f"revision = {_string(revision)}",
            f"down_revision = {_string(down_revision) if down_revision else None}",
            "branch_labels = None", "depends_on = None", ""]
    if plan.upgrade_loses:
        out.append(f"UPGRADE_LOSES = {_list(plan.upgrade_loses)}")
    out += [f"DOWNGRADE_LOSES{'' if plan.downgrade_loses else ': list[str]'} = {_list(plan.downgrade_loses)}",
            "", "", "def upgrade() -> None:"]
    out += _body(plan.upgrade)
    out += ["", "", "def downgrade() -> None:"]
    out += _body(plan.downgrade)
    return "\n".join(out) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _docstring(text: str) -> str:
    # Read back as written: a backslash would start an escape, three quotes end the docstring.
    return re.sub(r'"(?=")', r'\"', text.replace("\\", "\\\\"))


def _downgrade_line(plan: Plan) -> str:
    """What each direction loses, as it is lost: a narrowing keeps its column, a TTL deletes old rows."""
    lost = plan.loss_notes("downgrade")
    line = "Downgrade: restores the previous schema"
    line += f"; it loses {_losses(lost)}." if lost else ", losing nothing."
    if plan.upgrade_loses:
        line += f" Allowed when generated, the upgrade loses {_losses(plan.loss_notes('upgrade'))}."
    return line


def _losses(notes: dict[str, str]) -> str:
    return "; ".join(f"{target} ({how})" for target, how in notes.items())


def _list(items: list[str]) -> str:
    return "[" + ", ".join(_string(i) for i in items) + "]"


def _body(steps: tuple[Step, ...]) -> list[str]:
    lines = [line for step in steps for call in step.calls for line in _call(call)]
    return lines or ["    pass"]


def _string(value: str) -> str:
    if "\n" in value:
        return _block(value)
    if '"' not in value and "\\" not in value:
        return f'"{value}"'
    return repr(value)


def _block(value: str) -> str:
    """A multi-line argument as an indented triple-quoted block (its meaning is its lines, stripped)."""
    if '"""' in value or "\\" in value:
        return repr(value)
    lines = [line.strip() for line in value.strip().splitlines()]
    return '"""\n' + "".join(f"        {line}\n" if line else "\n" for line in lines) + '    """'


def _value(value) -> str:
    return _string(value) if isinstance(value, str) else repr(value)


def _call(call: Call) -> list[str]:
    """``op.name(...)``; arguments that would pass the line width go on a continuation line."""
    args = [_value(a) for a in call.args] + [f"{k}={_value(v)}" for k, v in call.kwargs]
    head = f"    op.{call.op}("
    lines, current = [], head
    for i, arg in enumerate(args):
        first, *rest = (arg + (", " if i < len(args) - 1 else ")")).split("\n")
        if len(current) + len(first.rstrip()) > _WIDTH and current.strip() not in ("", head.strip()):
            lines.append(current.rstrip())
            current = " " * 8
        current += first
        if rest:
            lines.append(current)
            lines += rest[:-1]
            current = rest[-1]
    lines.append(current.rstrip() if args else current + ")")
    return lines
