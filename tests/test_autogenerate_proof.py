"""``new --autogenerate`` proves its revision before writing it (app.revision_proof).

Mistakes in app/canonical.py that only ClickHouse can see, each once
written as a revision that lint, upgrade or verify then tripped over:
refused instead, in one ``Error:`` line naming the object, exit 2, no file.
Works on a copy of the migrations folder and an edited copy of
app/canonical.py, as tests/test_new_autogenerate.py does.
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli import main

pytestmark = [pytest.mark.slow]


def refunds_view(columns: str, query: str):
    """A new view over zakaz.fact_qtickets_sales: its columns in VIEWS, its SELECT in VIEW_QUERIES."""
    def edit(text: str) -> str:
        text = text.replace('VIEWS = """\n', f'VIEWS = """\nbi.v_refunds_daily: {columns}\n', 1)
        return text + f"\nVIEW_QUERIES = {{'bi.v_refunds_daily': {query!r}}}\n"
    return edit


def sales_column(old: str, new: str):
    """``old`` (lines of zakaz.fact_qtickets_sales, the first table that has them) replaced by ``new``."""
    def edit(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)
    return edit


def versions(folder) -> set[str]:
    return {p.name for p in (folder / "versions").glob("*.py")}


def refused(chain) -> str:
    """The one ``Error:`` line of a refused ``new --autogenerate``, which wrote nothing."""
    before = versions(chain)
    result = CliRunner().invoke(main, ["new", "--autogenerate", "Should not be written"], catch_exceptions=False)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert versions(chain) == before
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_a_view_whose_select_returns_other_columns_than_listed(chain, canonical):
    # Written, it upgraded, then verify said AHEAD and every later autogenerate wrote it again.
    canonical(refunds_view("d, city, refunds", "SELECT date AS d, city, sum(refunds) AS total "
                                               "FROM zakaz.fact_qtickets_sales GROUP BY d, city"))
    line = refused(chain)
    assert line.startswith("Error: bi.v_refunds_daily: its SELECT returns d, city, total, "
                           "but the canonical schema lists d, city, refunds"), line


def test_a_view_whose_select_names_an_unknown_column(chain, canonical):
    canonical(refunds_view("d, city, refunds", "SELECT date AS d, city, sum(refundz) AS refunds "
                                               "FROM zakaz.fact_qtickets_sales GROUP BY d, city"))
    line = refused(chain)
    assert line.startswith("Error: bi.v_refunds_daily: "), line
    assert "Unknown expression or function identifier `refundz`" in line and "UNKNOWN_IDENTIFIER" in line, line


def test_a_changed_default_that_does_not_parse(chain, canonical):
    after = "\n    _ver            UInt64\n    _loaded_at"
    canonical(sales_column("    currency        FixedString(3) DEFAULT 'RUB'" + after,
                           "    currency        FixedString(3) DEFAULT now( DEFAULT 0" + after))
    line = refused(chain)
    assert line.startswith("Error: zakaz.fact_qtickets_sales.currency: "), line
    assert "op.modify_column" in line and "Unmatched parentheses" in line, line


def test_a_new_column_whose_default_does_not_parse(chain, canonical):
    canonical(sales_column("    refunds         Decimal(12, 2) DEFAULT 0\n    currency",
                           "    refunds         Decimal(12, 2) DEFAULT 0\n"
                           "    discount        String DEFAULT now( DEFAULT 0\n    currency"))
    line = refused(chain)
    assert line.startswith("Error: zakaz.fact_qtickets_sales.discount: "), line
    assert "Unmatched parentheses" in line, line


def test_a_proven_revision_is_written(chain, canonical):
    """The proof passes what reaches the canonical schema: the same view, its columns listed right."""
    canonical(refunds_view("d, city, total", "SELECT date AS d, city, sum(refunds) AS total "
                                             "FROM zakaz.fact_qtickets_sales GROUP BY d, city"))
    before = versions(chain)
    result = CliRunner().invoke(main, ["new", "--autogenerate", "Refunds by day"], catch_exceptions=False)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert versions(chain) - before == {"0014_refunds_by_day.py"}
    again = CliRunner().invoke(main, ["new", "--autogenerate", "Again"], catch_exceptions=False)
    assert again.exit_code == 0 and again.stdout.startswith("No changes"), (again.stdout, again.stderr)


def test_alembic_revision_autogenerate_is_proven_too(chain, canonical):
    from alembic import command

    from app.chain import alembic_config
    from app.revision_autogenerate import RevisionUnproven

    canonical(refunds_view("d, city, refunds", "SELECT date AS d, city, sum(refunds) AS total "
                                               "FROM zakaz.fact_qtickets_sales GROUP BY d, city"))
    before = versions(chain)
    with pytest.raises(RevisionUnproven, match=r"^bi\.v_refunds_daily: its SELECT returns d, city, total"):
        command.revision(alembic_config(None, script_location=str(chain)), message="No", autogenerate=True)
    assert versions(chain) == before
