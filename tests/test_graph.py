"""graph and impact: what reads what, from ClickHouse's analyzer, on real engines.

Expected edges are written by hand from shared/spec/warehouse.md ("Each reads
only the objects named"), never computed by the code under test.  Mermaid is
checked twice: by a strict check of the subset app/graph.py emits (always),
and by Mermaid's own parser (``mermaid.parse`` under jsdom, from
tests/mermaid/, installed into var/mermaid with ``npm ci``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import sys
from pathlib import Path

import pytest

from app import dependencies, graph
from app.config import PROJECT_ROOT

# (read, reader), data flowing from what is read to its reader: warehouse.md's "Views" section.
WAREHOUSE_EDGES = {
    ("zakaz.stg_qtickets_sales", "zakaz.v_sales_latest"),
    ("zakaz.stg_qtickets_sales", "zakaz.v_sales_14d"),
    ("zakaz.dm_sales_daily", "zakaz.v_dm_sales_daily"),
    ("zakaz.dm_vk_ads_daily", "zakaz.v_vk_ads_daily"),
    ("zakaz.dm_sales_daily", "zakaz.v_marketing_roi_daily"),
    ("zakaz.dm_vk_ads_daily", "zakaz.v_marketing_roi_daily"),
    ("zakaz.fact_qtickets_sales", "zakaz.v_qtickets_sales_latest"),
    ("zakaz.fact_qtickets_sales", "zakaz.v_qtickets_sales_14d"),
    ("zakaz.fact_qtickets_inventory_latest", "zakaz.v_qtickets_inventory"),
    ("zakaz.fact_qtickets_sales", "zakaz.v_qtickets_freshness"),
    ("zakaz.dim_events", "zakaz.v_qtickets_freshness"),
    ("zakaz.fact_qtickets_inventory_latest", "zakaz.v_qtickets_freshness"),
    ("zakaz.fact_qtickets_sales_daily", "zakaz.v_qtickets_sales_dashboard"),
    ("zakaz.fact_qtickets_inventory_latest", "zakaz.v_qtickets_sales_dashboard"),
    ("zakaz.dim_events", "zakaz.v_qtickets_sales_dashboard"),
    ("zakaz.stg_qtickets_api_orders_raw", "zakaz.mv_qtickets_sales_latest"),
    ("zakaz.dm_sales_daily", "meta.v_quality_last_day"),
    ("zakaz.dm_vk_ads_daily", "meta.v_quality_last_day"),
    ("meta.sli_daily", "meta.v_sli_latest"),
    ("zakaz.dm_sales_daily", "bi.v_sales_daily"),
    ("zakaz.dim_city_alias", "bi.v_sales_daily"),
    ("zakaz.dm_vk_ads_daily", "bi.v_vk_ads_daily"),
    ("bi.v_sales_daily", "bi.v_marketing_roi_daily"),
    ("bi.v_vk_ads_daily", "bi.v_marketing_roi_daily"),
    ("zakaz.dm_sales_daily", "bi.v_ops_freshness"),
    ("zakaz.dm_vk_ads_daily", "bi.v_ops_freshness"),
}
# Revision 0009: "point v_qtickets_inventory, v_qtickets_freshness and v_qtickets_sales_dashboard at it".
REPOINTED_BY_0009 = {"zakaz.v_qtickets_inventory", "zakaz.v_qtickets_freshness", "zakaz.v_qtickets_sales_dashboard"}
BI_VIEWS = {"bi.v_sales_daily", "bi.v_vk_ads_daily", "bi.v_marketing_roi_daily", "bi.v_ops_freshness"}
MERMAID_PARSER = PROJECT_ROOT / "tests" / "mermaid"
MERMAID_INSTALL = PROJECT_ROOT / "var" / "mermaid"


@pytest.fixture(scope="module")
def head_deps() -> dependencies.Dependencies:
    return graph.head_dependencies()


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120, **kwargs)


# --- the strict check of the Mermaid subset app/graph.py emits ------------------------------

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_LABEL = r'"[^"\n]*"'
_SHAPES = [rf"\[\({_LABEL}\)\]", rf"\[\[{_LABEL}\]\]", rf"\({_LABEL}\)", rf"\[{_LABEL}\]", rf"\{{\{{{_LABEL}\}}\}}"]
_M_NODE = re.compile(rf"^\s+({_ID})(?:{'|'.join(_SHAPES)})$")
_M_EDGE = re.compile(rf"^\s+({_ID}) (?:-->|-\.->|==>\|{_LABEL}\|) ({_ID})$")
_M_SUBGRAPH = re.compile(rf"^\s+subgraph ({_ID}) \[{_LABEL}\]$")
_M_CLASSDEF = re.compile(rf"^\s+classDef ({_ID}) [a-z-]+:[#\w]+(?:,[a-z-]+:[#\w]+)*$")
_M_CLASS = re.compile(rf"^\s+class ({_ID}(?:,{_ID})*) ({_ID})$")
_RESERVED = {"end", "subgraph", "graph", "flowchart", "class", "classDef", "style", "click", "linkStyle", "default"}


def mermaid_problems(text: str) -> list[str]:
    """What is outside the subset, or inconsistent in it (undefined ids, unbalanced subgraphs)."""
    lines = text.splitlines()
    problems = [] if lines and re.fullmatch(r"flowchart (LR|TB)", lines[0]) else [f"header: {lines[:1]}"]
    nodes: list[str] = []
    used: list[str] = []
    classes: set[str] = set()
    depth = 0
    for n, line in enumerate(lines[1:], 2):
        if m := _M_NODE.match(line):
            nodes.append(m.group(1))
        elif m := _M_EDGE.match(line):
            used += [m.group(1), m.group(2)]
        elif m := _M_SUBGRAPH.match(line):
            depth += 1
            nodes.append(m.group(1))
        elif line.strip() == "end":
            depth -= 1
            problems += [f"line {n}: end without subgraph"] if depth < 0 else []
        elif m := _M_CLASSDEF.match(line):
            classes.add(m.group(1))
        elif m := _M_CLASS.match(line):
            used += m.group(1).split(",")
            problems += [] if m.group(2) in classes else [f"line {n}: class {m.group(2)} not defined"]
        else:
            problems.append(f"line {n}: outside the subset: {line!r}")
    problems += [f"{depth} subgraph(s) not closed"] if depth > 0 else []
    problems += [f"id {i} defined twice" for i in sorted({i for i in nodes if nodes.count(i) > 1})]
    problems += [f"reserved word as id: {i}" for i in sorted(set(nodes) & _RESERVED)]
    problems += [f"id {i} used, not defined" for i in sorted(set(used) - set(nodes))]
    return problems


def mermaid_edges(text: str) -> set[tuple[str, str]]:
    """(read, reader) by label, from a graph's plain arrows."""
    labels = {}
    for line in text.splitlines():
        m = re.match(rf'^\s+({_ID})[\[\(]+"([^"]+)"', line)
        if m:
            labels[m.group(1)] = m.group(2).removesuffix(" (materialized view)")
    return {(labels[a], labels[b]) for a, b in re.findall(rf"^\s+({_ID}) --> ({_ID})$", text, re.M)}


def readme_block() -> str:
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text.split("## What reads what", 1)[1]
    return section.split("```mermaid\n", 1)[1].split("```", 1)[0]


# --- the graph ------------------------------------------------------------------------------

def test_head_graph_has_exactly_the_reads_warehouse_md_describes(head_deps):
    assert set(head_deps.edges()) == WAREHOUSE_EDGES
    assert sum(1 for k in head_deps.kinds.values() if k == "view") == 16
    assert [n for n, k in head_deps.kinds.items() if k == "materialized_view"] == ["zakaz.mv_qtickets_sales_latest"]
    assert sum(1 for k in head_deps.kinds.values() if k == "table") == 24


def test_mermaid_draws_every_read_and_marks_what_datalens_reads(head_deps):
    text = graph.render_objects(head_deps)
    assert mermaid_problems(text) == []
    assert mermaid_edges(text) == WAREHOUSE_EDGES
    datalens = set(re.findall(r"^\s+(\w+) -\.-> datalens$", text, re.M))
    assert datalens == {"n_" + n.replace(".", "_") for n in BI_VIEWS}
    assert '[["zakaz.mv_qtickets_sales_latest (materialized view)"]]' in text


def test_the_strict_check_rejects_what_mermaid_would_not_parse():
    good = 'flowchart LR\n  subgraph s ["x"]\n    a("a")\n  end\n  a --> a\n'
    assert mermaid_problems(good) == []
    assert mermaid_problems(good.replace("  a --> a", "  a --> b"))  # undefined id
    assert mermaid_problems(good.replace("  end\n", ""))  # unclosed subgraph
    assert mermaid_problems(good.replace('a("a")', 'a("say "hi"")'))  # a quote in a label
    assert mermaid_problems(good.replace('a("a")', 'end("a")'))


def test_readme_shows_the_graph_of_the_chain_head(head_deps):
    assert readme_block() == graph.render_objects(head_deps), (
        "README's 'What reads what' block is not the chain's graph: paste `zakaz-schema graph --head` into it")


def _mermaid_parser() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run Mermaid's own parser (the strict check above still runs)")
    lock = (MERMAID_PARSER / "package-lock.json").read_bytes()
    if not (MERMAID_INSTALL / "node_modules" / "mermaid").is_dir() or \
            (MERMAID_INSTALL / "package-lock.json").read_bytes() != lock:
        MERMAID_INSTALL.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(MERMAID_PARSER / name, MERMAID_INSTALL / name)
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=MERMAID_INSTALL,
                              capture_output=True, text=True, timeout=600)
        if done.returncode:
            pytest.skip(f"npm ci of mermaid failed (offline?): {done.stderr.strip()[-200:]}")
    shutil.copy(MERMAID_PARSER / "parse.mjs", MERMAID_INSTALL / "parse.mjs")
    return MERMAID_INSTALL / "parse.mjs"


def test_mermaids_own_parser_accepts_both_graphs_and_rejects_a_broken_one(tmp_path, head_deps):
    parser = _mermaid_parser()
    files = {"objects": graph.render_objects(head_deps), "revisions": graph.revision_graph(live_heads=["0008"]),
             "readme": readme_block(), "broken": "flowchart LR\n  a[(\"x\"]\n"}
    for name, text in files.items():
        (tmp_path / f"{name}.mmd").write_text(text)
    done = subprocess.run(["node", str(parser), *(str(tmp_path / f"{n}.mmd") for n in files)],
                          capture_output=True, text=True, timeout=120)
    results = {Path(line.split()[0]).stem: line.split()[1] for line in done.stdout.splitlines()}
    assert results == {"objects": "ok", "revisions": "ok", "readme": "ok", "broken": "ERROR"}, done.stdout + done.stderr


def test_dot_has_the_same_edges(head_deps):
    text = graph.render_objects(head_deps, "dot")
    assert text.startswith("digraph warehouse {\n") and text.endswith("}\n")
    assert text.count("{") == text.count("}")
    labels = dict(re.findall(r'^\s+(\w+) \[label="([^"]+)"', text, re.M))
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"^\s+(\w+) -> (\w+);$", text, re.M)}
    assert edges == WAREHOUSE_EDGES
    assert {labels[a] for a in re.findall(r"^\s+(\w+) -> datalens \[style=dashed\];$", text, re.M)} == BI_VIEWS


# --- impact ---------------------------------------------------------------------------------

def test_impact_of_the_latest_inventory_names_the_three_views_0009_repointed():
    done = cli("impact", "zakaz.fact_qtickets_inventory_latest", "--head", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["impacted"]
    assert {i["name"] for i in found if i["kind"] == "view"} == REPOINTED_BY_0009
    assert all(i["direct"] for i in found)
    human = cli("impact", "zakaz.fact_qtickets_inventory_latest", "--head")
    assert human.returncode == 0 and all(v in human.stdout for v in REPOINTED_BY_0009)


def test_impact_of_a_column_follows_the_columns_each_view_reads(head_deps):
    found = dependencies.impact(head_deps, "zakaz.dm_vk_ads_daily.impressions")
    # v_quality_last_day sums spend only, v_ops_freshness reads _loaded_at only.
    assert {i.name: i.path for i in found} == {
        "bi.v_vk_ads_daily": ("zakaz.dm_vk_ads_daily.impressions", "bi.v_vk_ads_daily"),
        "zakaz.v_vk_ads_daily": ("zakaz.dm_vk_ads_daily.impressions", "zakaz.v_vk_ads_daily"),
        "zakaz.v_marketing_roi_daily": ("zakaz.dm_vk_ads_daily.impressions", "zakaz.v_marketing_roi_daily"),
        "bi.v_marketing_roi_daily": ("zakaz.dm_vk_ads_daily.impressions", "bi.v_vk_ads_daily",
                                     "bi.v_marketing_roi_daily"),
    }
    assert [i.name for i in dependencies.impact(head_deps, "zakaz.stg_qtickets_api_orders_raw.revenue")] == [
        "zakaz.mv_qtickets_sales_latest"]
    assert dependencies.impact(head_deps, "zakaz.stg_qtickets_api_orders_raw.order_id") == []


@pytest.mark.parametrize("target, message", [
    ("zakaz.fact_qtickets_inventory_lates", "did you mean zakaz.fact_qtickets_inventory_latest"),
    ("zakaz.dm_vk_ads_daily.impresions", "zakaz.dm_vk_ads_daily has no column 'impresions'; "
                                         "did you mean zakaz.dm_vk_ads_daily.impressions"),
])
def test_impact_on_an_unknown_name_is_one_line_naming_close_matches(target, message):
    done = cli("impact", target, "--head")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("Error: ") and message in done.stderr


# --- the live database, bad input --------------------------------------------------------------

def test_the_live_graph_is_the_database_as_it_is(database_at):
    before = graph.live_dependencies(database_at("0008"))
    # Before 0009 the three views read the old inventory table.
    assert {i.name for i in dependencies.impact(before, "zakaz.fact_qtickets_inventory")} == REPOINTED_BY_0009
    with pytest.raises(dependencies.UnknownObject, match="no object 'zakaz.fact_qtickets_inventory_latest'"):
        dependencies.impact(before, "zakaz.fact_qtickets_inventory_latest")
    after = graph.live_dependencies(database_at("0013"))
    assert dependencies.impact(after, "zakaz.fact_qtickets_inventory") == []
    assert set(after.edges()) == WAREHOUSE_EDGES


def test_graph_on_an_unreachable_server_is_one_line():
    done = cli("graph", "--url", "clickhouse+native://deploy:s3cret@127.0.0.1:1/default")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("Error: cannot reach")
    assert "s3cret" not in done.stderr


def test_graph_into_a_pipe_closed_early_exits_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "app", "graph", "--head"], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader leaves before the graph is written
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (0, "")


# --- the revision graph -------------------------------------------------------------------------

def test_revision_graph_shows_each_revision_and_where_the_database_is(database_at):
    done = cli("graph", "--revisions", "--url", database_at("0008"))
    assert done.returncode == 0, done.stderr
    assert mermaid_problems(done.stdout) == []
    assert re.findall(r"^\s+(r_\d+) --> (r_\d+)$", done.stdout, re.M) == [
        (f"r_{i:04d}", f"r_{i + 1:04d}") for i in range(1, 13)]
    assert re.findall(r"^\s+database -\.-> (\w+)$", done.stdout, re.M) == ["r_0008"]
    assert 'r_0009["0009: Add fact_qtickets_inventory_latest' in done.stdout


def test_revision_graph_shows_a_branch(versions_copy):
    from app import revision_files

    revision_files.new_revision("side step", head="0005", branch=True, script_location=str(versions_copy))
    text = graph.revision_graph(script_location=str(versions_copy))
    assert mermaid_problems(text) == []
    assert sorted(re.findall(r"^\s+r_0005 --> (r_\d+)$", text, re.M)) == ["r_0006", "r_0014"]
    assert 'r_0014["0014: side step"]' in text
    dot = graph.revision_graph(script_location=str(versions_copy), fmt="dot")
    assert "r_0005 -> r_0014;" in dot and "r_0005 -> r_0006;" in dot


# --- a 24.8 server: the analyzer's output there, and grants ----------------------------------------

@pytest.mark.server
def test_on_a_server_impact_names_the_grants_too(server):
    import server_support as support
    from app import commands

    support.reset(server)
    try:
        url = server.url("native", support.fresh_database(server))
        commands.upgrade(url, "head")
        deps = graph.live_dependencies(url)
        assert set(deps.edges()) == WAREHOUSE_EDGES
        found = dependencies.impact(deps, "zakaz.fact_qtickets_inventory_latest")
        names = {i.name for i in found}
        assert REPOINTED_BY_0009 <= names
        # warehouse.md's Access: zakaz_reader reads the table and every view, zakaz_etl writes the table.
        assert "SELECT on zakaz.fact_qtickets_inventory_latest to role zakaz_reader" in names
        assert "INSERT on zakaz.fact_qtickets_inventory_latest to role zakaz_etl" in names
        assert {f"SELECT on {v} to role zakaz_reader" for v in REPOINTED_BY_0009} <= names
    finally:
        support.reset(server)


# --- lint: a column a view reads, dropped or retyped without recreating the view -------------------

LINT_REVISION = '''"""A test revision that changes a column the views read.

Downgrade undoes it.
"""
from app.operations import create_view, drop_column, modify_column, add_column  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
'''


@pytest.fixture
def chain_to_0002(versions_copy) -> Path:
    for path in (versions_copy / "versions").glob("*.py"):
        if path.name[:4].isdigit() and int(path.name[:4]) > 2:
            path.unlink()
    return versions_copy


def _lint_with(folder: Path, body: str):
    from app.lint import lint_revisions

    (folder / "versions" / "0003_change.py").write_text(LINT_REVISION + textwrap.dedent(body))
    report = lint_revisions(["0003"], script_location=str(folder))
    return {f.message.split(", which ")[1].split(" reads")[0]: f for f in report.findings
            if f.rule == "view-column-change"}, report


def test_lint_names_each_view_reading_a_retyped_column(chain_to_0002):
    # dm_vk_ads_daily.clicks is read by zakaz.v_vk_ads_daily, zakaz.v_marketing_roi_daily and
    # bi.v_vk_ads_daily (warehouse.md); meta.v_quality_last_day and bi.v_ops_freshness do not read it.
    found, report = _lint_with(chain_to_0002, '''
        def upgrade():
            modify_column("zakaz.dm_vk_ads_daily", "clicks UInt32")

        def downgrade():
            modify_column("zakaz.dm_vk_ads_daily", "clicks UInt64")
    ''')
    assert set(found) == {"view zakaz.v_vk_ads_daily", "view zakaz.v_marketing_roi_daily", "view bi.v_vk_ads_daily"}
    f = found["view bi.v_vk_ads_daily"]
    assert f.severity == "error" and "retypes (UInt64 -> UInt32) zakaz.dm_vk_ads_daily.clicks" in f.message
    assert f.line == 13  # the modify_column line
    assert not report.ok


def test_lint_accepts_a_view_recreated_in_the_same_revision(chain_to_0002):
    found, _ = _lint_with(chain_to_0002, '''
        UPGRADE_LOSES = ["zakaz.dm_vk_ads_daily.impressions"]

        def upgrade():
            drop_column("zakaz.dm_vk_ads_daily", "impressions")
            create_view("zakaz.v_vk_ads_daily", "SELECT stat_date, city, clicks, spend FROM zakaz.dm_vk_ads_daily")

        def downgrade():
            add_column("zakaz.dm_vk_ads_daily", "impressions UInt64", after="city")
            create_view("zakaz.v_vk_ads_daily",
                        "SELECT stat_date, city, impressions, clicks, spend FROM zakaz.dm_vk_ads_daily")
    ''')
    # Recreated: not reported; the other two readers of impressions are.
    assert set(found) == {"view zakaz.v_marketing_roi_daily", "view bi.v_vk_ads_daily"}
    assert all("drops zakaz.dm_vk_ads_daily.impressions" in f.message for f in found.values())


def test_a_materialized_view_written_to_a_table_is_drawn_with_its_target(database_at):
    from app.engine import connect

    url = database_at("0013")
    with connect(url) as conn:
        for sql in ("CREATE TABLE zakaz.t_orders_by_city (city String, n UInt64) "
                    "ENGINE = SummingMergeTree ORDER BY city",
                    "CREATE MATERIALIZED VIEW zakaz.mv_orders_by_city TO zakaz.t_orders_by_city AS "
                    "SELECT city, count() AS n FROM zakaz.stg_qtickets_api_orders_raw GROUP BY city",
                    "CREATE VIEW zakaz.v_orders_by_city AS "
                    "SELECT city, sum(n) AS n FROM zakaz.t_orders_by_city GROUP BY city"):
            conn.exec_driver_sql(sql)
    deps = graph.live_dependencies(url)
    assert deps.writes == {"zakaz.mv_orders_by_city": "zakaz.t_orders_by_city"}
    paths = {i.name: i.path for i in dependencies.impact(deps, "zakaz.stg_qtickets_api_orders_raw.city")}
    assert paths["zakaz.v_orders_by_city"] == ("zakaz.stg_qtickets_api_orders_raw.city", "zakaz.mv_orders_by_city",
                                               "zakaz.t_orders_by_city", "zakaz.v_orders_by_city")
    text = graph.render_objects(deps)
    assert mermaid_problems(text) == []
    assert '  n_zakaz_mv_orders_by_city ==>|"writes"| n_zakaz_t_orders_by_city' in text.splitlines()
