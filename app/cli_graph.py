"""``zakaz-schema graph`` and ``zakaz-schema impact``: what reads what, and what a change would touch.

Registered on the main group by ``register(main)`` (app.cli).  app.graph and
app.dependencies import chDB and SQLAlchemy: they are imported inside the
commands, so ``--help`` does not pay for them (tests/test_cli.py checks).
"""
from __future__ import annotations

import click

from app import cli_output as out
from app.config import mask_url, resolve_url
from app.errors import UsageError

_head_option = click.option(
    "--head", "at_head", is_flag=True,
    help="The chain's head (replayed on a scratch embedded database) instead of the live database.")
_url_option = click.option(
    "--url", default=None, help="Database URL (else $ZAKAZ_DATABASE_URL, else the embedded database in var/).")


@click.command()
@_url_option
@_head_option
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True,
              help="Mermaid (renders on GitHub) or Graphviz DOT.")
@click.option("--revisions", is_flag=True,
              help="The revision graph (branches, merges, each revision's doc, where the database is) instead; "
                   "with --head, from the files alone (no database read, no marker).")
def graph(url, at_head, fmt, revisions):
    """Draw the warehouse's objects and what reads what (tables -> views -> views, DataLens)."""
    from app import graph as drawing  # chDB, SQLAlchemy (see the module docstring)

    if revisions:
        heads = None
        if not at_head:
            from app import commands  # alembic

            try:
                heads = commands.status(url).heads
            except UsageError as exc:  # unreachable, or not ours to read: the files alone still draw
                raise UsageError(f"{exc} (or add --head: the revision graph from the files alone, "
                                 "with no marker of where the database is)") from exc
        out.echo(drawing.revision_graph(live_heads=heads, fmt=fmt), nl=False)
        return
    deps = drawing.head_dependencies() if at_head else drawing.live_dependencies(url)
    out.echo(drawing.render_objects(deps, fmt), nl=False)


@click.command()
@click.argument("target", metavar="OBJECT[.COLUMN]")
@_url_option
@_head_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def impact(target, url, at_head, as_json):
    """Every view, materialized view and role grant depending on OBJECT (or one of its columns), with the path.

    \b
    OBJECT is db.table or db.view, e.g. zakaz.fact_qtickets_inventory_latest;
    add .COLUMN for one column.  Exit 2 for a name the database does not have.
    """
    from app import dependencies, graph as drawing  # chDB, SQLAlchemy (see the module docstring)

    deps = drawing.head_dependencies() if at_head else drawing.live_dependencies(url)
    found = dependencies.impact(deps, target)
    source = "the chain's head" if at_head else mask_url(resolve_url(url))
    data = {"target": target, "source": source, "impacted": [i.to_dict() for i in found],
            "grants_read": deps.grants is not None, "note": deps.grants_note}
    out.emit(data, as_json, lambda _: _print_impact(target, source, found, deps.grants_note, deps.grants is not None))


def _print_impact(target: str, source: str, found: list, note: str, grants_read: bool) -> None:
    counts = {k: sum(1 for i in found if i.kind == k) for k in ("view", "materialized view", "grant")}
    # "0 grants" would claim what was not looked at where system.grants is not readable.
    grants = f"{counts['grant']} grant(s)" if grants_read else "grants not read"
    out.echo(f"{target} ({source}): {counts['view']} view(s), {counts['materialized view']} "
             f"materialized view(s) depend on it; {grants}")
    for i in found:
        how = "directly" if i.direct else "via " + " -> ".join(i.path[1:-1])
        out.echo(f"  {i.kind:<17} {i.name}  ({how})")
    if note:
        out.echo(f"  ({note})")


def register(main: click.Group) -> None:
    main.add_command(graph)
    main.add_command(impact)
