"""A revision's statements, from alembic's offline SQL, and what their text says.

alembic renders each revision (``zakaz-schema sql``); ClickHouse normalises
each statement (``formatQuerySingleLineOrNull``) so that the patterns below
see one spelling.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from alembic import command as alembic_command

from app.ledger import LEDGER_TABLE, VERSION_VIEW
from app.losses import UPGRADE
from app.operations.definitions import RebuildTable


IDENT = r"(?:`(?:[^`\\]|\\.)+`|[\w$]+|\*)"
NAME = rf"{IDENT}(?:\.{IDENT})?"
_KINDS = (r"TABLE|MATERIALIZED VIEW|LIVE VIEW|WINDOW VIEW|VIEW|DICTIONARY|DATABASE|FUNCTION|"
          r"ROLE|USER|QUOTA|ROW POLICY|SETTINGS PROFILE|NAMED COLLECTION")
CREATE = re.compile(rf"^(?P<replace>CREATE OR REPLACE |REPLACE |CREATE )(?:TEMPORARY )?(?P<kind>{_KINDS}) "
                     rf"(?P<ine>IF NOT EXISTS )?(?P<name>{NAME})")
DROP = re.compile(rf"^DROP (?:TEMPORARY )?(?P<kind>{_KINDS}) (?P<ie>IF EXISTS )?(?P<name>{NAME})")
ALTER = re.compile(rf"^ALTER TABLE (?P<name>{NAME}) ")
RENAME = re.compile(r"^RENAME (?:TABLE|DICTIONARY) ")
RENAME_PAIR = re.compile(rf"({NAME}) TO ({NAME})")
INSERT = re.compile(rf"^INSERT INTO (?:TABLE )?(?P<name>{NAME})(?: \((?P<cols>[^)]*)\))? ")
FROM = re.compile(rf"\b(?:FROM|JOIN) ({NAME})")
ACCESS_ON = re.compile(rf"^(?P<verb>GRANT|REVOKE) .*? ON (?P<target>{NAME}) (?:TO|FROM) ")
TRUNCATE = re.compile(rf"^TRUNCATE (?:TABLE )?(?:IF EXISTS )?(?P<name>{NAME})")
DELETE_FROM = re.compile(rf"^DELETE FROM (?P<name>{NAME})")
MV_TO = re.compile(rf"^CREATE MATERIALIZED VIEW (?:IF NOT EXISTS )?{NAME} TO (?P<target>{NAME}) ")
KEY_COMMANDS = ("MODIFY_TTL", "MODIFY_ORDER_BY", "MODIFY_SAMPLE_BY", "MODIFY_PRIMARY_KEY")


# Kinds whose names have no database part.
GLOBAL_KINDS = ("DATABASE", "ROLE", "USER", "FUNCTION", "QUOTA", "ROW POLICY", "SETTINGS PROFILE",
                 "NAMED COLLECTION")


def unquote(ident: str) -> str:
    if ident.startswith("`") and ident.endswith("`"):
        return re.sub(r"\\(.)", r"\1", ident[1:-1])
    return ident


def full_name(text: str, default_db: str) -> str:
    parts = [unquote(p) for p in re.findall(IDENT, text)]
    return ".".join(parts) if len(parts) > 1 else f"{default_db}.{parts[0]}"


def object_name(kind: str, text: str, default_db: str) -> str:
    return unquote(text) if kind in GLOBAL_KINDS else full_name(text, default_db)


def columns_of(text: str) -> list[str]:
    return [unquote(c.strip()) for c in text.split(",") if c.strip()]


@dataclass
class Statement:
    raw: str
    norm: str | None  # formatQuerySingleLine; None for a comment-only chunk

    def match(self, pattern: re.Pattern):
        return pattern.match(self.norm) if self.norm else None

    def creates(self, default_db: str) -> tuple[str, str] | None:
        """(kind, name) of what a CREATE statement creates."""
        m = self.match(CREATE)
        if not m:
            return None
        return m.group("kind"), object_name(m.group("kind"), m.group("name"), default_db)


def _chunks_writer(out: list[str]):
    # alembic's offline mode writes each statement (and each "-- Running ..."
    # comment) with one write() call, so recording the calls splits the SQL
    # without parsing it.
    class Recorder:
        def write(self, text: str) -> None:
            out.append(text)

        def flush(self) -> None:
            pass
    return Recorder()


_RUNNING = re.compile(r"^-- Running (upgrade|downgrade) (.*?) -> (.*?)\s*$")


def render(cfg_factory, revision_range: str, direction: str,
           operations: dict[str, list] | None = None) -> dict[str, list[str]]:
    """Offline SQL of a range, as raw statements per revision (ledger rows left out).

    ``operations``, if given, receives each revision's ClickHouse operations.
    """
    chunks: list[str] = []
    cfg = cfg_factory()
    cfg.output_buffer = _chunks_writer(chunks)
    if operations is not None:
        cfg.attributes["operations_sink"] = lambda revision, _direction, ops: operations.setdefault(revision, ops)
    if direction == UPGRADE:
        alembic_command.upgrade(cfg, revision_range, sql=True)
    else:
        alembic_command.downgrade(cfg, revision_range, sql=True)
    out: dict[str, list[str]] = {}
    current = None
    for chunk in chunks:
        text = chunk.strip()
        m = _RUNNING.match(text)
        if m:
            ids = m.group(3) if direction == UPGRADE else m.group(2)
            current = ids.split(",")[0].strip()
            out.setdefault(current, [])
            continue
        if current is None or not text:
            continue
        if re.search(rf"\.({LEDGER_TABLE}|{VERSION_VIEW})\b", text.split("\n", 1)[0]):
            continue
        out[current].append(text.rstrip(";").strip())
    return out



def deleted_rows_of(st: Statement, default_db: str) -> str | None:
    for pattern in (TRUNCATE, DELETE_FROM):
        m = st.match(pattern)
        if m:
            return full_name(m.group("name"), default_db)
    m = st.match(ALTER)
    if m and re.search(r"\((DELETE WHERE|DROP PARTITION|DROP PART) ", st.norm or ""):
        return full_name(m.group("name"), default_db)
    return None


def copies(operations: list, default_db: str) -> dict[str, list[str]]:
    """Tables whose rows a step carries into a replacement: table -> copied columns.

    Read from the step's ``op.rebuild_table`` operations (their ``copy``),
    not from the INSERT/EXCHANGE text they render.  A rebuild written by hand
    in raw SQL is not recognised: its drop is a loss to declare, like any other.
    """
    return {full_name(o.name, default_db): columns_of(o.copy)
            for o in operations if isinstance(o, RebuildTable)}
