"""Discovery engine (Mult-VAE via cornac): event weights, fold-in for unseen users, the numpy
serving path against cornac's torch module, artifact round trip without cornac/torch."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.base import Engine, load_config
from models.popularity import PopularityEngine
from models.vae import VAEConfig, VAEEngine, interaction_matrix, to_cornac
from recdata.dataset import VAL, VAL_FOLD_IN, encode, leave_one_out, user_holdout, PreparedDataset
from recdata.evaluation import evaluate
from recdata.schema import HistoryBatch
from recdata.schema import BadRowReport, EventLog, make_events

REPO = Path(__file__).resolve().parents[2]
TINY = dict(hidden=[32], latent=8, batch_size=16, lr=3e-3, eval_every=5, input_dropout=0.2, torch_threads=1)


def clustered_log(n_users=80, block=15, per_user=8, seed=0) -> EventLog:
    """Two taste groups: even users touch items 0..block-1, odd users items block..2*block-1;
    event types at random. Items 2*block.. exist in the catalog only (cold start)."""
    rng = np.random.default_rng(seed)
    u, i, t, e = [], [], [], []
    for user in range(n_users):
        base = 0 if user % 2 == 0 else block
        items = rng.choice(block, per_user, replace=False) + base
        u += [user] * per_user
        i += list(items)
        t += list(range(per_user))
        e += list(rng.choice(3, per_user, p=[0.6, 0.25, 0.15]))
    items = pd.DataFrame({"item": np.arange(2 * block + 3)})
    return EventLog(make_events(np.array(u), np.array(i), t, e), items, BadRowReport(), "synthetic")


@pytest.fixture(scope="module")
def loo_ds() -> PreparedDataset:
    catalog, inter = encode(clustered_log())
    return PreparedDataset(catalog, leave_one_out(inter), {"split": "loo"})


@pytest.fixture(scope="module")
def trained(loo_ds) -> VAEEngine:
    return VAEEngine(VAEConfig(epochs=40, **TINY), loo_ds.catalog).fit(loo_ds.train, loo_ds.interactions.select(VAL))


def test_weights_come_from_event_types():
    log = EventLog(make_events(np.array([1, 1, 1, 2]), np.array([10, 11, 12, 10]), [0, 1, 2, 0],
                               [0, 1, 2, 0]), pd.DataFrame({"item": [10, 11, 12]}), BadRowReport())
    catalog, inter = encode(log)
    cfg = VAEConfig(**TINY)
    m = interaction_matrix(inter, cfg.weights).toarray()
    view, cart, buy = (m[0, catalog.item_index([x])[0]] for x in (10, 11, 12))
    assert (view, cart, buy) == (1.0, 3.0, 5.0)
    # Configurable, and the cornac Dataset carries the same weights at our dense indices.
    custom = VAEConfig(event_weights={"view": 1.0, "cart": 2.0, "purchase": 10.0}, **TINY)
    m2 = to_cornac(inter, custom.weights).matrix.toarray()
    assert m2[0, catalog.item_index([12])[0]] == 10.0 and m2[0, catalog.item_index([11])[0]] == 2.0
    # The fold-in input of a history ranks purchase > cart > view, and a repeat keeps the strongest.
    eng = VAEEngine(custom, catalog)
    x = eng._inputs(HistoryBatch.of([[0, 1, 2, 0]], [[0, 1, 2, 2]]))[0]
    assert x[0] == x[2] > x[1] > 0 and np.isclose(np.linalg.norm(x), 1.0)
    with pytest.raises(ValueError, match="view <= cart <= purchase"):
        VAEConfig(event_weights={"view": 5.0, "cart": 1.0, "purchase": 2.0})
    with pytest.raises(ValueError, match="valid keys"):
        load_config(VAEConfig, None, not_a_field=1)


def test_fold_in_scores_unseen_users_personally(trained, loo_ds):
    # Two users the model never saw: histories from one taste group each.
    a, b = (loo_ds.catalog.item_index(raw) for raw in ([0, 1, 2, 3], [15, 16, 17, 18]))
    batch = HistoryBatch.of([a, b], [[0, 0, 2, 1], [0, 1, 0, 0]], users=[-1, -1])
    idx, _ = trained.recommend(batch, k=5)
    raw = loo_ds.catalog.item_raw(idx)
    assert (raw[0] < 15).sum() >= 4, raw      # group A history -> group A items
    assert ((raw[1] >= 15) & (raw[1] < 30)).sum() >= 4, raw     # group B history -> group B items
    assert not set(idx[0]) & set(a)           # seen items filtered
    # Batched scoring of many users equals one-by-one scoring.
    hist = [np.array(h) for h in ([0, 5], [20, 21, 22], [], [3])]
    many = trained.score(HistoryBatch.of(hist))
    one = np.vstack([trained.score(HistoryBatch.of([h])) for h in hist])
    np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-5)


def test_beats_popularity_and_keeps_best_epoch(trained, loo_ds):
    vae = evaluate(trained, loo_ds, "test")
    pop = evaluate(PopularityEngine(catalog=loo_ds.catalog).fit(loo_ds.train), loo_ds, "test")
    assert vae["hr@10"] > pop["hr@10"], (vae, pop)
    checked = [r for r in trained.history if "val_recall@20" in r]
    assert len(checked) == 8 and any(r.get("best") for r in checked)


def test_numpy_forward_matches_cornac_module(trained):
    import torch

    x = trained._inputs(HistoryBatch.of([[0, 4, 9], [16, 20]], [[0, 2, 1], [1, 1]]))
    vae = trained.cornac_model.vae
    vae.load_state_dict({k: torch.from_numpy(v) for k, v in trained.params.items()})  # the served epoch
    vae.eval()
    with torch.no_grad():
        mu, _ = vae.encode(torch.from_numpy(x))
        probs = vae.decode(mu).numpy()
    logits = trained.decode(trained.encode(x))
    ours = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(ours / ours.sum(1, keepdims=True), probs, rtol=1e-4, atol=1e-6)


def test_artifact_round_trip_loads_without_cornac_or_torch(trained, tmp_path):
    folder = trained.save(tmp_path / "vae")
    batch = HistoryBatch.of([[0, 1, 2], [16, 17]], [[0, 1, 2], [0, 0]])
    np.save(tmp_path / "expected.npy", trained.score(batch))
    assert json.loads((folder / "manifest.json").read_text())["engine"] == "vae"
    assert Engine.load(folder).score(batch).shape == (2, trained.n_items)
    code = f"""
import sys
sys.modules['cornac'] = None; sys.modules['torch'] = None      # importing either now fails
import numpy as np
from models.base import Engine
from recdata.schema import HistoryBatch
eng = Engine.load({str(folder)!r})
got = eng.score(HistoryBatch.of([[0, 1, 2], [16, 17]], [[0, 1, 2], [0, 0]]))
np.testing.assert_allclose(got, np.load({str(tmp_path / 'expected.npy')!r}), rtol=1e-6)
print('ok', type(eng).__name__)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0 and "ok VAEEngine" in out.stdout, out.stderr[-2000:]


def test_strong_generalization_fold_in_and_cornac_recipe():
    catalog, inter = encode(clustered_log(n_users=100, per_user=10, seed=1))
    ds = PreparedDataset(catalog, user_holdout(inter, n_heldout=10), {"split": "users"})
    eng = VAEEngine(VAEConfig(epochs=20, **TINY), catalog)
    eng.fit(ds.train, ds.interactions.select([VAL, VAL_FOLD_IN]))
    assert any("val_recall@20" in r for r in eng.history)
    held_out = np.unique(ds.interactions.frame.query("split == 2")["uidx"])
    assert not set(held_out) & set(ds.train.users())    # test users were never trained on
    vae = evaluate(eng, ds, "test")
    pop = evaluate(PopularityEngine(catalog=catalog).fit(ds.train), ds, "test")
    assert vae["users"] >= 8 and vae["ndcg@10"] > pop["ndcg@10"], (vae, pop)
    # cornac's own training loop (binary input, fixed beta) through the same engine.
    stock = VAEEngine(VAEConfig(recipe="cornac", epochs=3, **TINY), catalog).fit(ds.train)
    assert np.isfinite(stock.score(HistoryBatch.of([[0, 1]]))).all()


def test_tune_hook_reports_each_epoch_and_resumes(loo_ds, tmp_path):
    from models.vae import tune_epochs

    cfg = VAEConfig(epochs=4, **{**TINY, "eval_every": 1})
    eng = VAEEngine(cfg, loo_ds.catalog)
    gen = tune_epochs(eng, loo_ds)
    first = [next(gen), next(gen)]
    assert [e for e, _ in first] == [1, 2] and all("val_ndcg@10" in m for _, m in first)
    # A trial restarted from its checkpoint (the engine artifact) continues at epoch 3.
    resumed = Engine.load(eng.save(tmp_path / "ckpt"))
    rest = list(tune_epochs(resumed, loo_ds, start_epoch=2))
    assert [e for e, _ in rest] == [3, 4]


def test_budget_stops_training_within_an_epoch_and_keeps_a_validated_model(loo_ds):
    # 80 users in batches of 4: 20 steps an epoch. A budget of ~0 s stops after the first step of
    # epoch 1, and that partial epoch is validated (its weights are what would be served).
    steps = []
    cfg = VAEConfig(epochs=50, **{**TINY, "batch_size": 4}, max_train_minutes=1e-6)
    eng = VAEEngine(cfg, loo_ds.catalog).fit(loo_ds.train, loo_ds.interactions.select(VAL),
                                             on_step=lambda step, total: steps.append((step, total)))
    assert steps == [(1, 50 * 20)]
    assert len(eng.history) == 1 and eng.history[0]["stopped"] == "budget" and "val_recall@20" in eng.history[0]
    assert eng.score(HistoryBatch([np.array([0, 1])], [np.array([0, 0])])).shape == (1, loo_ds.catalog.n_items)


def test_validation_during_training_uses_a_fixed_sample_of_users(loo_ds):
    eng = VAEEngine(VAEConfig(epochs=1, **TINY, val_users=10), loo_ds.catalog)
    X = interaction_matrix(loo_ds.train, eng.config.weights)
    hist, targets = eng._validation_set(X, loo_ds.interactions.select(VAL))
    again = eng._validation_set(X, loo_ds.interactions.select(VAL))
    assert hist.shape[0] == len(targets) == 10 and (hist != again[0]).nnz == 0
    assert all(len(t) == 1 for t in targets)  # each sampled user's own validation item


def test_budget_keeps_the_time_the_last_validation_takes(loo_ds, monkeypatch):
    # A validation made to take 0.6 s: without a reserve the fit would end one validation (0.6 s) past
    # its 2-second budget; with it, training stops early enough for the validation of the cut epoch.
    real_validate, real_estimate, budget_start = VAEEngine._validate, VAEEngine._validation_seconds, []

    def slow(self, hist, targets):
        time.sleep(0.6)
        return real_validate(self, hist, targets)

    def estimate(self, *args):  # called as the budget starts (after the data and the network are built)
        budget_start.append(time.monotonic())
        return real_estimate(self, *args)

    monkeypatch.setattr(VAEEngine, "_validate", slow)
    monkeypatch.setattr(VAEEngine, "_validation_seconds", estimate)
    cfg = VAEConfig(epochs=10_000, **{**TINY, "batch_size": 4}, max_train_minutes=2 / 60)
    eng = VAEEngine(cfg, loo_ds.catalog).fit(loo_ds.train, loo_ds.interactions.select(VAL))
    took = time.monotonic() - budget_start[0]
    assert eng.history[-1].get("stopped") == "budget" and "val_recall@20" in eng.history[-1]
    assert took < 2.0 + 0.3, f"training and validation took {took:.2f} s on a 2 s budget"
