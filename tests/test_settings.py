"""app.settings: one precedence for every setting of a run (caller > -x > environment > default)."""
from __future__ import annotations

import pytest

from app.config import DEFAULT_URL
from app.settings import DEFAULT_LOCK_WAIT, Settings

pytestmark = pytest.mark.fast

ENV_URL = "clickhouse+native://env@h:9000/default"
X_URL = "clickhouse+native://x@h:9000/default"
CLI_URL = "clickhouse+native://cli@h:9000/default"


def test_the_url_comes_from_the_caller_then_x_then_the_environment_then_the_default():
    env = {"ZAKAZ_DATABASE_URL": ENV_URL}
    assert Settings.from_sources({"url": CLI_URL}, {"url": X_URL}, env).url == CLI_URL
    assert Settings.from_sources({}, {"url": X_URL}, env).url == X_URL
    assert Settings.from_sources({}, {}, env).url == ENV_URL
    assert Settings.from_sources({}, {}, {}).url == DEFAULT_URL


def test_a_flag_is_on_when_any_source_turns_it_on():
    assert not Settings.from_sources({}, {}, {}).allow_data_loss
    assert Settings.from_sources({"allow_data_loss": True}, {}, {}).allow_data_loss
    for word in ("1", "true", "YES", "on"):
        assert Settings.from_sources({}, {"resume": word}, {}).resume
    assert not Settings.from_sources({}, {"strict": "no"}, {}).strict
    # The CLI passes every flag, False included: that does not turn off -x.
    assert Settings.from_sources({"strict": False}, {"strict": "true"}, {}).strict


def test_lock_wait_from_the_caller_else_x_else_the_default():
    assert Settings.from_sources({"lock_wait": 5}, {"lock_wait": "7"}, {}).lock_wait == 5.0
    assert Settings.from_sources({}, {"lock_wait": "7"}, {}).lock_wait == 7.0
    assert Settings.from_sources({}, {}, {}).lock_wait == DEFAULT_LOCK_WAIT


def test_cluster_mode_follows_the_same_precedence():
    env = {"ZAKAZ_CLUSTER": "from_env"}
    assert Settings.from_sources({"cluster": "from_cli"}, {"cluster": "from_x"}, env).cluster.name == "from_cli"
    assert Settings.from_sources({}, {"cluster": "from_x"}, env).cluster.name == "from_x"
    assert Settings.from_sources({}, {}, env).cluster.name == "from_env"
    assert Settings.from_sources({}, {}, {}).cluster is None


def test_the_callers_hooks_travel_with_the_settings():
    def reporter(event):
        pass

    settings = Settings.from_sources({"reporter": reporter, "fail_at": ("0002", 3)}, {}, {})
    assert settings.reporter is reporter and settings.fail_at == ("0002", 3) and settings.warn is None
