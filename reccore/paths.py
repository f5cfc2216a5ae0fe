"""The project's work directory: MLflow store, prepared data, embedding caches, job outputs."""
from __future__ import annotations

import os
from pathlib import Path


def work_dir() -> Path:
    """`$RECSYS_HOME`, default `.recsys/` in the current directory; created on first use."""
    d = Path(os.environ.get("RECSYS_HOME", ".recsys")).resolve()
    d.mkdir(parents=True, exist_ok=True)
    return d
