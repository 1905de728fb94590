"""Pictures of the warehouse: its objects and what reads what, and the revision graph, as Mermaid or DOT.

The object graph comes from ``app.dependencies`` (ClickHouse's own analysis of
each view), read from the live database or from the chain's head: a copy of
the head's template database (``app.replay``), so ``--head`` and the live
database go through the same code.  Edges point the way data flows: from
what is read to its reader.  ``bi`` views are what DataLens reads, drawn
with an edge into a DataLens node.

Output is text only, deterministic (sorted), in a small subset of each
language: tests/test_graph.py checks that subset strictly.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

from app.chain import alembic_config, script_directory, short_doc
from app.config import resolve_url
from app.dependencies import Dependencies, read_dependencies
from app.engine import connect
from app.replay import copy_template, linear_chain, scratch_folder
from app.schema import MATERIALIZED_VIEW, TABLE

MERMAID, DOT = "mermaid", "dot"
DATALENS_DATABASE = "bi"
DATALENS = "DataLens"


# --- where the graph comes from ------------------------------------------------------------

def live_dependencies(url: str | None) -> Dependencies:
    with connect(resolve_url(url)) as conn:
        return read_dependencies(conn)


def head_dependencies(script_location: str | None = None) -> Dependencies:
    """The graph the chain builds at its head (a copy of the head's template database)."""
    with head_database(script_location) as url, connect(url) as conn:
        return read_dependencies(conn)


@contextmanager
def head_database(script_location: str | None = None) -> Iterator[str]:
    chain = linear_chain(script_directory(alembic_config(None, script_location=script_location)))
    with scratch_folder("zakaz-graph-") as folder:
        yield copy_template(chain[-1].revision, folder / "db", script_location=script_location)


# --- the object graph ---------------------------------------------------------------------

def _ident(name: str) -> str:
    # Mermaid and DOT ids: letters, digits, underscores (dots and dashes mean something there).
    return re.sub(r"\W", "_", name)


def _node_id(name: str) -> str:
    return "n_" + _ident(name)


def _databases(deps: Dependencies) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in sorted(deps.kinds):
        out.setdefault(name.split(".", 1)[0], []).append(name)
    return out


def _datalens_reads(deps: Dependencies) -> list[str]:
    return [n for n in sorted(deps.kinds) if n.startswith(DATALENS_DATABASE + ".") and deps.kinds[n] != TABLE]


def object_mermaid(deps: Dependencies) -> str:
    shapes = {TABLE: '[("{}")]', MATERIALIZED_VIEW: '[["{}"]]'}
    lines = ["flowchart LR"]
    for db, names in _databases(deps).items():
        lines.append(f'  subgraph db_{_ident(db)} ["{db}"]')
        for name in names:
            shape = shapes.get(deps.kinds[name], '("{}")')
            label = name + (" (materialized view)" if deps.kinds[name] == MATERIALIZED_VIEW else "")
            lines.append(f"    {_node_id(name)}{shape.format(label)}")
        lines.append("  end")
    datalens = _datalens_reads(deps)
    if datalens:
        lines.append(f'  datalens{{{{"{DATALENS}"}}}}')
    for src, reader in deps.edges():
        lines.append(f"  {_node_id(src)} --> {_node_id(reader)}")
    for mv, target in sorted(deps.writes.items()):
        lines.append(f'  {_node_id(mv)} ==>|"writes"| {_node_id(target)}')
    for name in datalens:
        lines.append(f"  {_node_id(name)} -.-> datalens")
    if datalens:
        lines.append("  classDef datalens fill:#fff3bf,stroke:#f08c00")
        lines.append(f"  class {','.join([_node_id(n) for n in datalens] + ['datalens'])} datalens")
    return "\n".join(lines) + "\n"


def object_dot(deps: Dependencies) -> str:
    shapes = {TABLE: "cylinder", MATERIALIZED_VIEW: "box3d"}
    lines = ["digraph warehouse {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    datalens = set(_datalens_reads(deps))
    for db, names in _databases(deps).items():
        lines.append(f'  subgraph cluster_{_ident(db)} {{')
        lines.append(f'    label="{_dot(db)}";')
        for name in names:
            style = ', style=filled, fillcolor="#fff3bf"' if name in datalens else ""
            lines.append(f'    {_node_id(name)} [label="{_dot(name)}", shape={shapes.get(deps.kinds[name], "box")}{style}];')
        lines.append("  }")
    if datalens:
        lines.append(f'  datalens [label="{DATALENS}", shape=hexagon, style=filled, fillcolor="#fff3bf"];')
    for src, reader in deps.edges():
        lines.append(f"  {_node_id(src)} -> {_node_id(reader)};")
    for mv, target in sorted(deps.writes.items()):
        lines.append(f'  {_node_id(mv)} -> {_node_id(target)} [label="writes", style=bold];')
    for name in sorted(datalens):
        lines.append(f"  {_node_id(name)} -> datalens [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_objects(deps: Dependencies, fmt: str = MERMAID) -> str:
    return object_dot(deps) if fmt == DOT else object_mermaid(deps)


# --- the revision graph ---------------------------------------------------------------------

def _text(s: str) -> str:
    # Inside a quoted label: no double quotes (Mermaid has no escape for them), no line breaks.
    return re.sub(r"\s+", " ", s.replace('"', "'")).strip()


def _dot(s: str) -> str:
    # A DOT string ends at an unescaped quote: a message ending in a backslash
    # escaped the closing one and left the file unparsable.
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _parents(script) -> list[str]:
    down = script.down_revision
    return sorted(down) if isinstance(down, (tuple, list)) else [down] if down else []


def revision_graph(script_location: str | None = None, live_heads: list[str] | None = None,
                   fmt: str = MERMAID) -> str:
    """Every revision (id and one-line doc), its parents (branches and merges), and where the database is."""
    script = script_directory(alembic_config(None, script_location=script_location))
    revs = sorted(script.walk_revisions("base", "heads"), key=lambda s: s.revision)
    live = set(live_heads or [])
    if fmt == DOT:
        lines = ["digraph revisions {", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
        for s in revs:
            style = ', style=filled, fillcolor="#d3f9d8"' if s.revision in live else ""
            lines.append(f'  r_{_ident(s.revision)} [label="{_dot(s.revision + ": " + _text(short_doc(s)))}"{style}];')
        for s in revs:
            for parent in _parents(s):
                lines.append(f"  r_{_ident(parent)} -> r_{_ident(s.revision)};")
        if live:
            lines.append('  database [label="database", shape=cylinder];')
            lines += [f"  database -> r_{_ident(h)} [style=dashed];" for h in sorted(live)]
        lines.append("}")
        return "\n".join(lines) + "\n"
    lines = ["flowchart TB"]
    for s in revs:
        lines.append(f'  r_{_ident(s.revision)}["{s.revision}: {_text(short_doc(s))}"]')
    for s in revs:
        for parent in _parents(s):
            lines.append(f"  r_{_ident(parent)} --> r_{_ident(s.revision)}")
    if live:
        lines.append('  database[("database")]')
        lines += [f"  database -.-> r_{_ident(h)}" for h in sorted(live)]
        lines.append("  classDef live fill:#d3f9d8,stroke:#2b8a3e")
        lines.append(f"  class {','.join('r_' + _ident(h) for h in sorted(live))} live")
    return "\n".join(lines) + "\n"
