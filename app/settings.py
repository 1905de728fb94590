"""The settings of one migration run, from every source, in one precedence.

Sources, strongest first: what the caller put in alembic's
``Config.attributes`` (the CLI's options, the tests' arguments), then
``alembic -x key=value``, then the environment, then the default.  A flag
(``allow_data_loss``, ``resume``, ``strict``) is on when any source turns
it on: no source can turn off what another asked for.

Cluster settings are app.cluster's (``from_options`` applies the same
precedence to its keys); the URL's environment variable and default are
app.config's.  The CLI's ``--url`` and ``--cluster`` also read their
variables through click (for ``--help``); the value is the same.

Hooks for the caller (``reporter``, ``warn``, ``fail_at``, ``operations_sink``) travel along:
they only come from ``Config.attributes``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from app import cluster as cluster_mode
from app.config import resolve_url

TRUE = {"1", "true", "yes", "on"}
DEFAULT_LOCK_WAIT = 60.0


@dataclass
class Settings:
    url: str
    allow_data_loss: bool = False
    resume: bool = False
    strict: bool = False
    lock_wait: float = DEFAULT_LOCK_WAIT
    cluster: cluster_mode.Cluster | None = None
    # A callable receiving one app.step_event.StepEvent per finished step.
    reporter: Callable[[Any], None] | None = None
    # A callable receiving each warning line (else they are logged).
    warn: Callable[[str], None] | None = None
    # (revision, statement number): fail there (the tests' injected failure).
    fail_at: tuple[str, int] | None = None
    # A callable receiving (revision, direction, operations) per finished
    # step, online or offline: the ClickHouse operations it ran, as data
    # (app.lint reads what a step does from them, not from its SQL text).
    operations_sink: Callable[[str, str, list], None] | None = None

    @classmethod
    def from_sources(cls, attributes: Mapping[str, Any] | None = None, x: Mapping[str, str] | None = None,
                     environ: Mapping[str, str] | None = None) -> "Settings":
        attributes = attributes or {}
        x = x or {}
        environ = os.environ if environ is None else environ

        def flag(key: str) -> bool:
            return bool(attributes.get(key)) or str(x.get(key, "")).lower() in TRUE

        return cls(
            url=attributes.get("url") or resolve_url(x.get("url"), environ),
            allow_data_loss=flag("allow_data_loss"),
            resume=flag("resume"),
            strict=flag("strict"),
            lock_wait=float(attributes.get("lock_wait") or x.get("lock_wait") or DEFAULT_LOCK_WAIT),
            cluster=cluster_mode.from_options(attributes, x, environ),
            reporter=attributes.get("reporter"),
            warn=attributes.get("warn"),
            fail_at=attributes.get("fail_at"),
            operations_sink=attributes.get("operations_sink"),
        )

    @classmethod
    def from_alembic(cls, context) -> "Settings":
        """The settings of the run ``context`` (alembic's EnvironmentContext) is about to make."""
        return cls.from_sources(context.config.attributes, context.get_x_argument(as_dictionary=True))
