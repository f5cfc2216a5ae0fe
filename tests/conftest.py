"""Shared fixtures: a private work dir (MLflow store, caches) per test; Ray kept local."""
from __future__ import annotations

import os
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
