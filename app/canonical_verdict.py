"""Whether the canonical schema is ahead of the chain: a verdict cached for ``status``.

``verify``, ``new --autogenerate`` and a ``status`` that loads the chain
compare app/canonical.py with the schema the chain builds (a replay, cached
by the chain's checksum).  The fast ``status`` (app.fastpath) answers with
one query and no alembic or chDB, so it reads the verdict they left instead.

The verdict is keyed by the SHA-256 of every file in the versions folder and
of app/canonical.py: edit either and the old verdict no longer applies
``verify`` is the check, this is a hint).  Where verdicts were kept before
(a developer's checkout), ``status`` finds the new one itself: the fast path
declines and the full ``status`` compares (a replay if the chain changed).
In a fresh install, without verdicts, neither ``status`` pays for a replay:
they say nothing of the canonical schema until ``verify`` or
``new --autogenerate`` has kept a first verdict.  It lives beside app.fastpath's
chain cache, in the versions folder's ``__pycache__``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from app.atomic_file import write_atomically

CANONICAL_FILE = Path(__file__).with_name("canonical.py")
FILE_NAME = "zakaz-canonical-verdict.json"
KEEP = 20  # verdicts kept (switching branches back and forth finds its own again)


def _key(prints: list[list]) -> str | None:
    """``prints``: app.fastpath.fingerprint of the versions folder (name, size, mtime, SHA-256)."""
    try:
        canonical = hashlib.sha256(CANONICAL_FILE.read_bytes()).hexdigest()
    except OSError:
        return None
    digest = hashlib.sha256(canonical.encode())
    for name, _, _, sha in prints:
        if sha:  # alembic.ini's entry has none: it does not change what the chain builds
            digest.update(f"{name}\0{sha}\n".encode())
    return digest.hexdigest()


def _path(directory: Path) -> Path:
    return directory / "__pycache__" / FILE_NAME


def kept(directory: Path) -> bool:
    """Whether this versions folder has verdicts at all: a checkout where the
    comparison has been run (a developer's), not a fresh install."""
    return _path(directory).exists()


def read(directory: Path, prints: list[list] | None) -> bool | None:
    """The verdict for these files: True (canonical ahead), False, or None (not known)."""
    key = _key(prints) if prints is not None else None
    if key is None:
        return None
    try:
        value = json.loads(_path(directory).read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, bool) else None


def write(directory: Path, prints: list[list] | None, ahead: bool) -> None:
    """Best effort: a read-only checkout simply has no verdict for ``status``."""
    key = _key(prints) if prints is not None else None
    if key is None:
        return
    target = _path(directory)
    try:
        try:
            known = json.loads(target.read_text())
            known = known if isinstance(known, dict) else {}
        except (OSError, ValueError):
            known = {}
        known.pop(key, None)
        known[key] = ahead
        known = dict(list(known.items())[-KEEP:])
        write_atomically(target, json.dumps(known))
    except OSError:
        return
