"""Step events are typed, and `upgrade --json` prints them in the shape it always had."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.cli import main
from app.json_output import dumps
from app.step_event import StepEvent

# The keys of a step in `upgrade --json` / `downgrade --json`, in order.
STEP_KEYS = ["revision", "direction", "status", "message", "duration_ms", "statements", "skipped", "heads", "at_head"]


@pytest.mark.fast
def test_an_event_is_written_as_the_dict_it_replaced():
    event = StepEvent("0005", "upgrade", "applied", "add loaded_at", 12, 3, ["GRANT x TO y"], ["0005"], False)
    assert json.loads(dumps(event)) == {
        "revision": "0005", "direction": "upgrade", "status": "applied", "message": "add loaded_at",
        "duration_ms": 12, "statements": 3, "skipped": ["GRANT x TO y"], "heads": ["0005"], "at_head": False,
    }
    assert list(json.loads(dumps(event))) == STEP_KEYS
    # Read as a mapping too, for callers written when events were dicts.
    assert event["revision"] == "0005" and {**event}["heads"] == ["0005"]
    with pytest.raises(KeyError):
        event["kind"]


def test_upgrade_json_prints_every_step_in_that_shape(db_url):
    result = CliRunner().invoke(main, ["upgrade", "0002", "--url", db_url, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data) == ["steps", "heads", "seconds", "warnings"]
    assert [s["revision"] for s in data["steps"]] == ["0001", "0002"]
    assert all(list(s) == STEP_KEYS for s in data["steps"])
    assert data["steps"][-1]["heads"] == ["0002"] and data["steps"][-1]["at_head"] is False
    assert data["heads"] == ["0002"]
