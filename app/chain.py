"""The project's revision chain as alembic sees it: its Config and ScriptDirectory."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from app import alembic_hook
from app.config import ALEMBIC_INI, resolve_url
from app.config import script_location as config_script_location
from app.fastpath import fingerprint

# versions folder -> (its files' fingerprint, the revision map that loaded them).
# A few folders at most in one process (the project's, a test's or a bench's).
_LOADED: dict[str, tuple[list, Any]] = {}
_LOADED_MAX = 8


def alembic_config(url: str | None = None, script_location: str | None = None, **attributes: Any) -> Config:
    """alembic's Config for ``url`` and a migrations folder; ``attributes``: the run's settings (app.settings)."""
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", config_script_location(script_location))
    cfg.attributes["url"] = resolve_url(url)
    cfg.attributes.update(attributes)
    return cfg


def script_directory(cfg: Config) -> ScriptDirectory:
    return share_loaded_revisions(ScriptDirectory.from_config(cfg))


def share_loaded_revisions(script: ScriptDirectory) -> ScriptDirectory:
    """``script``, with the revision modules this process already loaded from the very same files.

    alembic loads every revision file anew for each command; a process that
    runs many (the drill, the tests, a deploy's status then upgrade) paid
    that each time.  The files' names, sizes, mtimes and SHA-256 (what
    app.fastpath's cache is keyed by) must be unchanged; a folder the
    fingerprint cannot vouch for (sub-folders, several version locations)
    is loaded as alembic always does.  Never for a ScriptDirectory that will
    add a revision to its map (``alembic revision``): that would change the
    shared map too.
    """
    if script.version_locations or script.recursive_version_locations or script.sourceless:
        return script
    directory = Path(script.dir, "versions")
    prints = fingerprint(directory)
    if prints is None:
        return script
    key = str(directory.resolve())
    cached = _LOADED.get(key)
    if cached is not None and cached[0] == prints:
        alembic_hook.use_revision_map(script, cached[1])
        return script
    _LOADED.pop(key, None)
    while len(_LOADED) >= _LOADED_MAX:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[key] = (prints, alembic_hook.revision_map(script))
    return script


def short_doc(script: Script) -> str:
    doc = (script.doc or "").strip().splitlines()
    return doc[0] if doc else ""
