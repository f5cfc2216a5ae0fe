"""Markov transition engine: hand-computed scores, registry by name, save/load round trip."""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.base import Engine, get_engine_class
from models.markov import MarkovConfig, MarkovEngine
from recdata.dataset import Catalog, Interactions
from recdata.schema import HistoryBatch


def _train() -> tuple[Catalog, Interactions]:
    # user 0: 0 -> 1 -> 2 ; user 1: 0 -> 1 -> 3 ; user 2: 4 -> 0
    seqs = {0: [0, 1, 2], 1: [0, 1, 3], 2: [4, 0]}
    rows = [(u, i, t) for u, items in seqs.items() for t, i in enumerate(items)]
    f = pd.DataFrame(rows, columns=["uidx", "iidx", "ts"])
    f["event"] = np.int8(0)
    f["weight"] = np.float32(1)
    f["split"] = np.int8(0)
    cat = Catalog(np.arange(3), np.arange(100, 105))
    return cat, Interactions(f, 3, 5)


def test_scores_are_transition_counts():
    cat, train = _train()
    e = MarkovEngine(MarkovConfig(last_n=2, decay=0.5, popularity_weight=0.0), cat).fit(train)
    s = e.score(HistoryBatch.of([[0], [0, 1], [3]]))
    np.testing.assert_allclose(s[0], [0, 2, 0, 0, 0])  # 0 was followed by 1 twice
    np.testing.assert_allclose(s[1], [0, 1, 1, 1, 0])  # T[1] + 0.5 * T[0] = [0,0,1,1,0] + [0,1,0,0,0]
    np.testing.assert_allclose(s[2], 0)  # nothing ever followed 3
    # the tie-break falls back to popularity for a history with no known successor
    e2 = MarkovEngine(MarkovConfig(popularity_weight=1e-6), cat).fit(train)
    idx, _ = e2.recommend(HistoryBatch.of([[3]]), k=2)
    assert idx[0].tolist() == [0, 1]  # items 0 and 1 have 3 and 2 training events


def test_window_counts_skips():
    cat, train = _train()
    e = MarkovEngine(MarkovConfig(window=2, last_n=1, popularity_weight=0.0), cat).fit(train)
    np.testing.assert_allclose(e.score(HistoryBatch.of([[0]]))[0], [0, 2, 1, 1, 0])


def test_registered_and_round_trip(tmp_path):
    assert get_engine_class("markov") is MarkovEngine
    cat, train = _train()
    e = MarkovEngine(MarkovConfig(last_n=2), cat).fit(train)
    e.save(tmp_path / "m")
    back = Engine.load(tmp_path / "m")
    assert isinstance(back, MarkovEngine) and back.config == e.config
    batch = HistoryBatch.of([[0, 1], [4]])
    np.testing.assert_array_equal(back.score(batch), e.score(batch))
