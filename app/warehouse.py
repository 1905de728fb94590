"""The warehouse's databases: what zakaz-schema manages, snapshots and compares.

Its own module, not app.canonical's: the ledger, status and every deploy need
the names, and a mistake in the canonical schema must not stop them (only
the commands that compare with that schema).
"""
from __future__ import annotations

MANAGED_DATABASES = ("zakaz", "meta", "bi")
