"""Shared fixtures: a private work dir (MLflow store, caches) per test; Ray kept local."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

@pytest.fixture
def recsys_home(tmp_path, monkeypatch) -> Path:
    """A fresh work dir: MLflow sqlite store, prepared-data cache and artifacts go here."""
    home = tmp_path / "recsys_home"
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


# Ray 2.60 turns on token auth by default; tests talk to their own local cluster only.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True, scope="module")
def _ray_sessions_only_in_marked_modules(request):
    """A module that leaves Ray running must be marked `ray_session`, so that `make test` gives it its own
    interpreter (see tests/run_suite.sh): a second Ray session in a shared pytest process can crash it.
    Catches a module that leaves Ray initialised, not one that starts and shuts it down itself.
    run_suite.sh asks pytest which tests carry the mark, so a module, class or function mark all work."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized() and request.node.get_closest_marker("ray_session") is None:
        ray.shutdown()
        pytest.fail(f"{request.node.nodeid} left Ray initialised: add `pytestmark = pytest.mark.ray_session` "
                    "to the module so tests/run_suite.sh runs it in its own interpreter", pytrace=False)
