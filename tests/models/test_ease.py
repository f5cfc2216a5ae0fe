"""EASE discovery engine: the same B as cornac's EASE, keeps the validation-best lambda, beats popularity
on planted structure, scores a brand-new history, round-trips its artifact, refuses a catalog too big,
keeps its lambda grid inside the budget."""
import time

import numpy as np
import pytest

from models.base import Engine
from models.ease import EaseConfig, EaseEngine
from models.ease import model as ease_model
from models.vae.data import to_cornac
from models.popularity import PopularityEngine
from recdata.dataset import VAL, prepare
from recdata.evaluation import evaluate
from recdata.schema import HistoryBatch
from recdata.synthetic import SyntheticConfig, write_csv


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    path = tmp_path_factory.mktemp("ease") / "log.csv"
    write_csv(SyntheticConfig(n_users=800, n_items=500, seed=3), path)
    return prepare("rees46", path)


def test_ease_keeps_the_best_lambda_and_beats_popularity(ds):
    eng = EaseEngine(EaseConfig(lambdas=[1.0, 30.0, 3000.0]), ds.catalog).fit(ds.train, ds.interactions.select(VAL))
    vals = {r["lambda"]: r["val_ndcg@10"] for r in eng.history}
    assert len(vals) == 3 and eng.lamb == max(vals, key=vals.get)
    assert np.allclose(np.diag(eng.B), 0.0)  # an item never recommends itself
    test = evaluate(eng, ds, "test")
    pop = evaluate(PopularityEngine(catalog=ds.catalog).fit(ds.train), ds, "test")
    assert test["ndcg@10"] > 1.2 * pop["ndcg@10"], (test, pop)


def test_ease_scores_new_histories_and_round_trips(ds, tmp_path):
    eng = EaseEngine(EaseConfig(lambdas=[30.0]), ds.catalog).fit(ds.train)
    batch = HistoryBatch([np.array([3, 5, 5]), np.array([], np.int64)], [np.array([0, 0, 2]), np.array([], np.int8)])
    scores = eng.score(batch)
    assert scores.shape == (2, ds.catalog.n_items) and np.isfinite(scores).all()
    assert np.allclose(scores[1], 0.0)  # no history, no evidence: EASE is silent, popularity fills in online
    # a repeated item counts once, with its strongest event (purchase = 5)
    assert np.allclose(scores[0], 1.0 * eng.B[3] + 5.0 * eng.B[5], atol=1e-5)
    loaded = Engine.load(eng.save(tmp_path / "ease"))
    assert isinstance(loaded, EaseEngine) and loaded.lamb == 30.0
    assert np.allclose(loaded.score(batch), scores)


def test_ease_refuses_a_catalog_above_max_items(ds):
    with pytest.raises(ValueError, match="max_items"):
        EaseEngine(EaseConfig(max_items=10), ds.catalog).fit(ds.train)
    with pytest.raises(ValueError, match="positive"):
        EaseConfig(lambdas=[0.0])


def test_ease_lambda_grid_stops_on_its_budget(ds, capsys):
    # A budget of ~0 s: the first fit always runs (a model is needed), the grid stops after it.
    eng = EaseEngine(EaseConfig(lambdas=[30.0, 100.0, 300.0], max_train_minutes=1e-6), ds.catalog)
    eng.fit(ds.train, ds.interactions.select(VAL))
    assert [r["lambda"] for r in eng.history] == [30.0] and eng.lamb == 30.0
    assert "stopped on the 1e-06-minute budget after 1 of 3 fits" in capsys.readouterr().out
    with pytest.raises(ValueError, match="max_train_minutes"):
        EaseConfig(max_train_minutes=-1)


def test_ease_weights_are_cornacs(ds):
    from cornac.models import EASE

    cfg = EaseConfig(lambdas=[3.0, 300.0])
    for lamb in cfg.lambdas:
        ours = EaseEngine(EaseConfig(lambdas=[lamb]), ds.catalog).fit(ds.train).B
        theirs = EASE(lamb=lamb, posB=False, verbose=False).fit(to_cornac(ds.train, cfg.weights)).B
        assert ours.dtype == np.float32 and np.allclose(ours, theirs, rtol=1e-4, atol=1e-6), lamb


def test_ease_starts_no_fit_that_would_end_past_the_budget(ds, monkeypatch, capsys):
    # Fits made to take 1 s on a 1.6 s budget: the second would end at ~2 s, so it never starts (the
    # grid used to start it, and end one fit past the budget).
    real = ease_model.ease_weights

    def slow(gram, lamb):
        time.sleep(1.0)
        return real(gram, lamb)

    monkeypatch.setattr(ease_model, "ease_weights", slow)
    started = time.monotonic()
    eng = EaseEngine(EaseConfig(lambdas=[30.0, 100.0], max_train_minutes=1.6 / 60), ds.catalog)
    eng.fit(ds.train, ds.interactions.select(VAL))
    took = time.monotonic() - started
    assert [r["lambda"] for r in eng.history] == [30.0] and took < 1.6, took
    assert "after 1 of 2 fits (one takes" in capsys.readouterr().out
