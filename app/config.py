"""Where the database is, and how to show its URL without a password.

Precedence: an explicit URL (``--url`` or ``alembic -x url=...``), then
``ZAKAZ_DATABASE_URL``, then the embedded default in the project's git-ignored
``var/`` folder.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from app.errors import UsageError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EMBEDDED_PATH = PROJECT_ROOT / "var" / "zakaz.chdb"
DEFAULT_URL = f"clickhouse+chdb:///default?path={DEFAULT_EMBEDDED_PATH}"
ENV_URL = "ZAKAZ_DATABASE_URL"
# Another migrations folder (a scratch copy in tests and lint; a fork's own chain).
ENV_MIGRATIONS = "ZAKAZ_MIGRATIONS"
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"
SCRIPT_LOCATION = PROJECT_ROOT / "migrations"

KNOWN_DRIVERS = ("clickhouse+chdb", "clickhouse+native", "clickhouse+http", "clickhouse")


class ConfigError(UsageError):
    """A URL or setting that cannot be used; the message is one line."""


def resolve_url(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The database URL: ``explicit``, else ZAKAZ_DATABASE_URL, else the embedded default.

    An empty one given on purpose (``--url "$PROD_URL"`` with the variable
    unset) is refused: falling back to the embedded default would report a
    successful deploy of a database nobody meant.
    """
    env = (os.environ if environ is None else environ).get(ENV_URL)
    for given, where in ((explicit, "--url (alembic: -x url=)"), (env, ENV_URL)):
        if given is not None and not given.strip():
            raise ConfigError(f"{where} is empty: give a database URL, or leave it out "
                              f"for the embedded default {DEFAULT_URL}")
        if given:
            return given
    return DEFAULT_URL


def parse_url(url: str):
    """Parse and validate a database URL, with errors that never echo a password."""
    # Imported here, not at the top: the CLI imports this module, and
    # `--help` must not pay for SQLAlchemy.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ValueError:
        # SQLAlchemy's int() of the port: its text quotes what follows the
        # last ':', which can be the end of a password holding '@' and ':'.
        raise ConfigError(
            f"malformed database URL {_shown_malformed(url)}: its port is not a number "
            "(in a password, write the at sign as %40, ':' as %3A and '/' as %2F)"
        ) from None
    except ArgumentError:
        raise ConfigError(
            f"malformed database URL {_shown_malformed(url)}; expected e.g. "
            "clickhouse+native://user@host:9000/default or "
            "clickhouse+chdb:///default?path=var/zakaz.chdb"
        ) from None
    if parsed.host and "@" in parsed.host:
        # user:p@ss@host parses as password "p" on host "ss@host": the
        # connection error that follows would name neither cause.
        raise ConfigError(
            f"database URL {mask_url(url)}: the password holds an at sign, which a URL must "
            "write as %40 (and ':' as %3A, '/' as %2F)"
        )
    if any(key.lower() == "password" for key in parsed.query):
        # The drivers take it besides the user part's (HTTP: "multiple values
        # for argument 'password'"; native: the user part's empty one wins).
        shown = parsed.difference_update_query([k for k in parsed.query if k.lower() == "password"])
        raise ConfigError(
            f"database URL {shown.render_as_string(hide_password=True)}: a password= query parameter is "
            "not used; put the password in the URL's user part, percent-encoded: "
            "clickhouse+native://user:PASSWORD@host:9000/default (write '@' as %40, ':' as %3A, '/' as %2F)"
        )
    if parsed.drivername not in KNOWN_DRIVERS:
        raise ConfigError(
            f"unknown database driver {parsed.drivername!r}; use one of "
            + ", ".join(KNOWN_DRIVERS[:3])
        )
    return parsed


def _shown_malformed(url: str) -> str:
    """A URL that does not parse, quoted for a message: only its scheme if it may hold a password.

    Masking finds a password by the URL's shape, and a malformed URL may not
    have it (one slash after the scheme, no host, a typo in the port).
    """
    if "@" not in url and ":" not in url.partition("://")[2] and "password" not in url.lower():
        return repr(url)
    return repr(url.split(":", 1)[0] + ":…")


def script_location(explicit: str | None = None) -> str:
    return explicit or os.environ.get(ENV_MIGRATIONS) or str(SCRIPT_LOCATION)


def is_embedded(url: str) -> bool:
    return url.startswith("clickhouse+chdb:")


# A password may hold any character, '@', '/', ':' and '?' included, so the
# URL is not parsed: everything after the user name's ':' up to the *last* '@'
# on the line that is followed by the rest of an authority (a host and port
# as typed, valid or not: a typo in either must not unmask, nor an empty host,
# nor a scheme typed with one slash, none, or no colon) is the password.
# Over-masking two URLs on one line is safe; a leak is not.
# One shape is not an authority: "@ 0x<hex>", a frame of a server's stack
# trace (``DB::Exception: ... @ 0x00000000006d48ec``), whose "DB::" reads as a
# scheme and an empty user: masked, the whole error was lost.
_PASSWORD_IN_URL = re.compile(
    r"(?P<head>(?:[A-Za-z][\w+.-]*:/{0,2}|//)[^:/@\s]*:)(?P<pw>[^\n]*)(?P<tail>@)"
    r"(?!\s+0x[0-9A-Fa-f]+(?:\s|$))"
    r"(?=[^\s/?#@'\"),;]*(?:[/?#\s'\"),;]|$))"
)
# A password=... query parameter runs to the next parameter ('&'), whitespace,
# a quote or a closing bracket: what follows is the rest of the message, kept.
# In a URL such characters in a value are percent-encoded.
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&\s'\")]*)", re.I)


def mask_url(url: str) -> str:
    """The URL (or any text holding URLs) with every password replaced by ``***``.

    Works on malformed URLs too: it does not depend on how a URL parses.
    """
    url = _PASSWORD_IN_URL.sub(lambda m: m["head"] + "***" + m["tail"], str(url))
    return _PASSWORD_IN_QUERY.sub(lambda m: m["head"] + "***", url)


def mask_text(text: str, *secrets: str | None) -> str:
    """Remove URL passwords and any given secret values from a message."""
    text = mask_url(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
