"""The project's revision chain as alembic sees it: its Config and ScriptDirectory."""
from __future__ import annotations

from typing import Any

from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from app.config import ALEMBIC_INI, resolve_url
from app.config import script_location as config_script_location


def alembic_config(url: str | None = None, script_location: str | None = None, **attributes: Any) -> Config:
    """alembic's Config for ``url`` and a migrations folder; ``attributes``: the run's settings (app.settings)."""
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", config_script_location(script_location))
    cfg.attributes["url"] = resolve_url(url)
    cfg.attributes.update(attributes)
    return cfg


def script_directory(cfg: Config) -> ScriptDirectory:
    return ScriptDirectory.from_config(cfg)


def short_doc(script: Script) -> str:
    doc = (script.doc or "").strip().splitlines()
    return doc[0] if doc else ""
