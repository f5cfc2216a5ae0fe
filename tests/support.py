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


SHOP_CATEGORIES = ["shoes", "phones", "books", "toys", "garden", "audio"]


def shop_log(n_users: int = 120, n_items: int = 600, per_user: int = 12, seed: int = 0):
    """Users browse one category in item order (a sequence to learn, a taste to fold in); items carry
    a title, a category and a price, so the business filters have something to filter."""
    import numpy as np
    import pandas as pd

    from recdata.schema import BadRowReport, EventLog, make_events

    rng = np.random.default_rng(seed)
    cat_of = np.arange(n_items) % len(SHOP_CATEGORIES)
    u, i, t, e = [], [], [], []
    for user in range(n_users):
        pool = np.flatnonzero(cat_of == user % len(SHOP_CATEGORIES))
        start = rng.integers(len(pool))
        items = pool[(start + np.arange(per_user)) % len(pool)]
        u += [user] * per_user
        i += list(items)
        t += list(range(per_user))
        e += list(rng.choice(3, per_user, p=[0.7, 0.2, 0.1]))
    items = pd.DataFrame({"item": np.arange(n_items), "category": [SHOP_CATEGORIES[c] for c in cat_of],
                          "title": [f"{SHOP_CATEGORIES[c]} item {k} model {k % 7}" for k, c in enumerate(cat_of)],
                          "price": np.round(rng.uniform(5, 500, n_items), 2)})
    return EventLog(make_events(np.array(u), np.array(i), t, e), items, BadRowReport(), "synthetic")
