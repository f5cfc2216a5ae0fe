"""Helpers importable from any test module (`from support import shared_data`)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def shared_data(name: str) -> Path:
    """Path of a dataset in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data beside the repo; CI has it)")
    return path


def write_cyclic_log(folder: Path, users: int = 60, items: int = 30, seed: int = 0,
                     lengths: tuple[int, int] = (6, 14), name: str = "cyclic.txt") -> Path:
    """SASRec-format `user item` lines where each user walks the item cycle 1 -> 2 -> ... -> items -> 1
    from a random start: the next item is fully determined by the last one (a sequence model must
    learn it; popularity cannot)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, users + 1):
        start, n = rng.integers(0, items), rng.integers(*lengths)
        lines += [f"{u} {(start + j) % items + 1}" for j in range(n)]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path
