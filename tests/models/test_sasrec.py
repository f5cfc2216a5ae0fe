"""SASRec engine: masking, padding, losses, save/load, TFLite parity, config errors (tiny budgets)."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.base import Engine, load_config
from models.popularity import PopularityEngine
from models.sasrec import SasrecConfig, SasrecEngine
from models.sasrec.lite import SasrecTFLite
from models.sasrec.model import SasrecNetwork
from recdata.dataset import VAL, prepare
from recdata.evaluation import HistoryBatch, evaluate, evaluation_batches
from support import write_cyclic_log

N_ITEMS = 30


def tiny_config(**kw) -> SasrecConfig:
    base = dict(max_len=8, hidden=16, blocks=1, heads=2, epochs=4, batch=16, lr=0.01, dropout=0.1,
                jit_compile=False, patience=10)
    return SasrecConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare("sasrec", write_cyclic_log(tmp_path_factory.mktemp("cyclic"), items=N_ITEMS))


@pytest.fixture(scope="module")
def trained(data):
    return SasrecEngine(tiny_config(), data.catalog).fit(data.train, data.interactions.select(VAL))


def test_learns_a_deterministic_sequence_far_above_popularity(data, trained):
    sas = evaluate(trained, data, "test")
    pop = evaluate(PopularityEngine(catalog=data.catalog).fit(data.train), data, "test")
    assert sas["ndcg@10"] > pop["ndcg@10"] + 0.3, (sas, pop)
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    assert "val_ndcg@10" in trained.history[0] and trained.best_val_ndcg > 0


def _net(**kw) -> SasrecNetwork:
    tf.keras.utils.set_random_seed(0)
    net = SasrecNetwork(tiny_config(dropout=0.0, **kw), N_ITEMS)
    net(tf.zeros([1, 8], tf.int32), tf.zeros([1, 8], tf.int32))
    return net


@pytest.mark.parametrize("pre_ln", [True, False])
def test_causal_mask_no_future_leakage(pre_ln):
    net = _net(pre_ln=pre_ln, blocks=2)
    items = tf.constant([[3, 7, 9, 11, 2, 5, 6, 8]], tf.int32)
    changed = tf.constant([[3, 7, 9, 11, 20, 5, 6, 8]], tf.int32)  # position 4 changes
    a, b = net(items).numpy(), net(changed).numpy()
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-6)  # the past cannot see the change
    assert np.abs(a[:, 4:] - b[:, 4:]).max() > 1e-3              # the present and future do


def test_padding_is_invisible():
    net = _net(use_event_types=True)
    items = tf.constant([[0, 0, 0, 4, 5, 6, 7, 8]], tf.int32)
    events = tf.constant([[0, 0, 0, 0, 1, 0, 2, 0]], tf.int32)
    before = net(items, events).numpy()
    # Whatever the padding embedding holds and whatever event codes pads carry, real positions agree.
    table = net.item_emb.embeddings
    table.assign(tf.tensor_scatter_nd_update(table, [[0]], tf.random.normal([1, table.shape[1]]) * 5))
    after = net(items, tf.constant([[2, 1, 2, 0, 1, 0, 2, 0]], tf.int32)).numpy()
    np.testing.assert_allclose(before[:, 3:], after[:, 3:], atol=1e-5)
    # Positions count from the end: a shorter window over the same history gives the same output.
    np.testing.assert_allclose(net(items[:, 2:], events[:, 2:]).numpy()[:, -1], before[:, -1], atol=1e-5)


def test_batched_scores_equal_one_by_one(trained):
    hist = [np.array([1, 2, 3]), np.array([5, 6, 7, 8, 9, 10, 11, 12, 13, 14]), np.array([20])]
    batch = HistoryBatch.of(hist)
    together = trained.score(batch)
    assert together.shape == (3, trained.n_items)
    for i, h in enumerate(hist):
        np.testing.assert_allclose(trained.score(HistoryBatch.of([h]))[0], together[i], atol=1e-5)


@pytest.mark.parametrize("loss, sampler", [("sampled", "uniform"), ("sampled", "popularity"), ("sampled", "mixed"),
                                           ("gbce", "uniform"), ("bce", "uniform")])
def test_other_losses_train(data, loss, sampler):
    eng = SasrecEngine(tiny_config(loss=loss, sampler=sampler, negatives=8, epochs=3), data.catalog).fit(data.train)
    losses = [r["loss"] for r in eng.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_budget_stops_training_mid_epoch_and_validates_at_the_stop(data):
    cfg = tiny_config(batch=8, epochs=50, max_train_minutes=1e-6)     # spent by the first step
    eng = SasrecEngine(cfg, data.catalog).fit(data.train, data.interactions.select(VAL), progress=False)
    (rec,) = eng.history
    assert rec["steps"] == 1 < rec["steps_per_epoch"] and rec["stopped_mid_epoch"]
    assert "val_ndcg@10" in rec and eng.best_val_ndcg == rec["val_ndcg@10"]   # validated once at the stop
    # Without a validation set the weights training reached are kept.
    alone = SasrecEngine(cfg, data.catalog).fit(data.train, progress=False)
    assert alone.history[0]["steps"] == 1 and np.isfinite(alone.score(HistoryBatch.of([[1, 2]]))).all()


def test_budget_keeps_the_time_the_last_validation_takes(data, monkeypatch):
    # One step an epoch (batch 64) and validations made to take 3 s, on an 8 s budget: after the first
    # epoch and its validation (~5 s; the first step traces the graph) another epoch and its validation
    # would end past the budget, so training stops; without the reserve it would run one more, and
    # end past the budget by most of a validation.
    real = SasrecEngine._evaluate

    def slow(self, *args, **kw):
        time.sleep(3.0)
        return real(self, *args, **kw)

    monkeypatch.setattr(SasrecEngine, "_evaluate", slow)
    cfg = tiny_config(batch=64, epochs=10_000, eval_every=1, max_train_minutes=8 / 60)
    started = time.monotonic()
    eng = SasrecEngine(cfg, data.catalog).fit(data.train, data.interactions.select(VAL), progress=False)
    took = time.monotonic() - started
    assert eng.history[0]["steps"] == eng.history[0]["steps_per_epoch"] == 1 and "val_ndcg@10" in eng.history[-1]
    assert took < 8.0, f"fit took {took:.2f} s on an 8 s budget ({len(eng.history)} epochs)"


def test_validation_uses_a_fixed_random_sample_of_users(data):
    indptr, items, events = data.train.sequences()
    val = data.interactions.select(VAL)
    everyone, _ = SasrecEngine._val_histories(indptr, items, events, val)
    a, ta = SasrecEngine._val_histories(indptr, items, events, val, limit=10, seed=3)
    b, tb = SasrecEngine._val_histories(indptr, items, events, val, limit=10, seed=3)
    assert len(a) == 10 < len(everyone) and np.array_equal(a.users, b.users) and np.array_equal(ta, tb)
    assert set(a.users) <= set(everyone.users) and not np.array_equal(a.users, everyone.users[:10])
    with pytest.raises(ValueError, match="val_users"):
        SasrecConfig(val_users=0)


def test_progress_prints_plain_lines_when_not_a_terminal():
    import io

    from models.sasrec.progress import EpochProgress

    out = io.StringIO()  # not a TTY, like a Ray job log
    bar = EpochProgress(3, total=4, every_s=0.0, stream=out)
    for loss in (4.0, 2.0):
        bar.update(loss)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "epoch 3 step 2/4 (50%)" in lines[-1] and "loss 3.0000" in lines[-1]
    assert "ETA" in lines[-1] and "\r" not in out.getvalue()
    quiet = io.StringIO()
    EpochProgress(1, total=2, every_s=30.0, stream=quiet).update(1.0)   # within 30 s of the start: no line
    assert quiet.getvalue() == ""


def test_save_load_round_trip_and_tflite_topk(data, trained, tmp_path):
    folder = trained.save(tmp_path / "artifact")
    for name in ("manifest.json", "catalog", "sasrec.weights.h5", "model.tflite", "tflite.json"):
        assert (folder / name).exists(), name
    loaded = Engine.load(folder)
    assert isinstance(loaded, SasrecEngine) and loaded.config == trained.config
    batch, _ = next(evaluation_batches(data, "test", batch_size=64))
    keras_scores = trained.score(batch)
    np.testing.assert_array_equal(loaded.score(batch), keras_scores)

    lite = SasrecTFLite(folder)
    np.testing.assert_allclose(lite.score(batch), keras_scores, atol=1e-4)
    k_idx, _ = trained.recommend(batch, k=10)
    l_idx, _ = lite.recommend(batch, k=10)
    np.testing.assert_array_equal(l_idx, k_idx)
    one = HistoryBatch(batch.items[:1], batch.events[:1])  # the interpreter resizes for batch 1
    np.testing.assert_array_equal(lite.recommend(one, 10)[0], trained.recommend(one, 10)[0])


def test_tflite_scores_short_histories_at_their_own_length(data, tmp_path):
    """The TFLite model takes any length <= max_len: a batch of short histories runs at (a multiple
    of 16 of) its longest, and must score exactly like the Keras model at full padding."""
    eng = SasrecEngine(tiny_config(max_len=40, epochs=2), data.catalog).fit(data.train)
    lite = SasrecTFLite(eng.save(tmp_path / "a"))
    assert lite.dynamic_length
    rng = np.random.default_rng(0)
    for lengths in ([3], [2, 5, 9], [17, 1], [40, 33], [60]):   # widths 16, 16, 32, 40, 40 (cut)
        batch = HistoryBatch.of([rng.integers(0, data.catalog.n_items, n) for n in lengths])
        np.testing.assert_allclose(lite.score(batch), eng.score(batch), atol=1e-4)
        assert lite.scorer.shape == (len(lengths), min(40, max(16, -(-min(max(lengths), 40) // 16) * 16)))


def test_all_windows_keep_long_histories_older_events():
    from models.sasrec.model import training_windows

    indptr = np.array([0, 8, 10])                # user 0: items 0..7; user 1: items 10, 11 (ids shift by 1)
    items = np.array([0, 1, 2, 3, 4, 5, 6, 7, 10, 11])
    events = np.zeros(10, np.int8)
    inp, _, tgt = training_windows(indptr, items, events, max_len=3)
    assert tgt.tolist() == [[6, 7, 8], [0, 0, 12]]            # the paper's: the last 3 targets only
    inp, _, tgt = training_windows(indptr, items, events, max_len=3, all_windows=True)
    assert tgt.tolist() == [[6, 7, 8], [3, 4, 5], [0, 0, 2], [0, 0, 12]]   # every target, once
    assert inp.tolist() == [[5, 6, 7], [2, 3, 4], [0, 0, 1], [0, 0, 11]]


def test_serving_path_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys; import models.sasrec.lite; from models.base import get_engine_class; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_yaml_config_unknown_key_and_bad_values(tmp_path):
    shipped = load_config(SasrecConfig, Path(__file__).resolve().parents[2] / "models/sasrec/sasrec_ml1m.yaml")
    assert shipped.loss == "ce" and shipped.max_len == 200 and shipped.train_windows == "all"
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_len: 50\nhiden: 64\n")
    with pytest.raises(ValueError, match="hiden.*valid keys"):
        load_config(SasrecConfig, bad)
    with pytest.raises(ValueError, match="loss='softmax' is not one of"):
        load_config(SasrecConfig, None, loss="softmax")
    with pytest.raises(ValueError, match="not divisible by heads"):
        SasrecConfig(hidden=64, heads=3)
    with pytest.raises(ValueError, match="set sampler: popularity"):
        SasrecConfig(loss="sampled", sampler="zipf")
    with pytest.raises(ValueError, match="gBCE's calibration assumes uniform"):
        SasrecConfig(loss="gbce", sampler="popularity")
    with pytest.raises(ValueError, match="gbce_t"):
        SasrecConfig(loss="gbce", gbce_t=1.5)


def test_score_before_fit_says_what_to_do(data):
    with pytest.raises(RuntimeError, match="fit"):
        SasrecEngine(tiny_config(), data.catalog).score(HistoryBatch.of([[1, 2]]))


def test_tune_hook_pauses_training_at_each_reported_epoch(data, tmp_path):
    from models.sasrec import tune_epochs

    engine = SasrecEngine(tiny_config(epochs=3, eval_every=1), data.catalog)
    batch = HistoryBatch.of([[1, 2, 3]])
    seen = []
    for epoch, metrics in tune_epochs(engine, data, 0):
        before = engine.score(batch)
        engine.save(tmp_path / f"e{epoch}")  # what the Tune trial does while training waits
        np.testing.assert_array_equal(before, engine.score(batch))  # no step ran meanwhile
        seen.append((epoch, metrics["val_ndcg@10"]))
    assert [e for e, _ in seen] == [1, 2, 3] and all(0 <= v <= 1 for _, v in seen)


def test_weight_average_tracks_the_ema_and_swaps_back():
    from models.sasrec.engine import WeightAverage

    v = tf.Variable([0.0, 0.0])
    avg = WeightAverage([v], decay=0.5)
    expected = np.zeros(2)
    for value in ([4.0, 8.0], [0.0, 4.0], [2.0, 2.0]):
        v.assign(value)
        avg.update()
        expected = 0.5 * expected + 0.5 * np.asarray(value)
    np.testing.assert_allclose(avg.shadow[0].numpy(), expected)      # [1.5, 3.0]
    with avg.applied():
        np.testing.assert_allclose(v.numpy(), expected)
    np.testing.assert_allclose(v.numpy(), [2.0, 2.0])                # raw weights back after the block


def test_ema_validation_keeps_the_better_of_raw_and_averaged(data):
    eng = SasrecEngine(tiny_config(ema_decay=0.9, epochs=3), data.catalog)
    eng.fit(data.train, data.interactions.select(VAL))
    for rec in eng.history:
        assert rec["val_ndcg@10"] == max(rec["val_raw_ndcg@10"], rec["val_ema_ndcg@10"])
        assert rec["val_weights"] == ("ema" if rec["val_ema_ndcg@10"] > rec["val_raw_ndcg@10"] else "raw")
    assert eng.best_val_ndcg == max(r["val_ndcg@10"] for r in eng.history)
    # The kept weights are the ones that validated best: re-validating them gives that figure.
    indptr, items, events = data.train.sequences()
    again = eng._evaluate(*eng._val_histories(indptr, items, events, data.interactions.select(VAL)))
    assert again["ndcg@10"] == pytest.approx(eng.best_val_ndcg, abs=1e-9)
    with pytest.raises(ValueError, match="ema_decay"):
        SasrecConfig(ema_decay=1.0)


def test_lr_decays_after_validations_without_improvement(data):
    # An lr of 1e-12 moves no float32 weight, so every validation after the first ties (no improvement).
    cfg = tiny_config(lr=1e-12, epochs=6, lr_decay_factor=0.5, lr_decay_patience=2)
    eng = SasrecEngine(cfg, data.catalog).fit(data.train, data.interactions.select(VAL))
    assert [r["lr"] / 1e-12 for r in eng.history] == pytest.approx([1, 1, 1, 0.5, 0.5, 0.25])
    # lr_decay_after: no decay in the first epochs (the warm-up plateau), even with the counter run out.
    late = SasrecEngine(tiny_config(lr=1e-12, epochs=6, lr_decay_factor=0.5, lr_decay_patience=2, lr_decay_after=4),
                        data.catalog).fit(data.train, data.interactions.select(VAL))
    assert [r["lr"] / 1e-12 for r in late.history] == pytest.approx([1, 1, 1, 1, 1, 0.5])
    constant = SasrecEngine(tiny_config(lr=1e-12, epochs=3), data.catalog)
    constant.fit(data.train, data.interactions.select(VAL))
    assert [r["lr"] for r in constant.history] == pytest.approx([1e-12] * 3)
    for bad in ({"lr_decay_factor": 0.0}, {"lr_decay_factor": 1.5}, {"lr_decay_patience": 0},
                {"lr_decay_after": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SasrecConfig(**bad)


def test_training_resumes_exactly_from_a_saved_state(data, tmp_path):
    """2 epochs, save with the training state, load, 2 more == 4 epochs in one go (dropout, shuffling,
    Adam's moments and step, the weight average all continue) -- from a state saved after fit() and
    from a checkpoint written by on_epoch while fit() ran."""
    val = data.interactions.select(VAL)
    cfg = tiny_config(epochs=4, ema_decay=0.9)

    def checkpoint_at_2(epoch, rec):
        if epoch == 2:
            straight.checkpoint(tmp_path / "mid")

    straight = SasrecEngine(cfg, data.catalog)
    straight.fit(data.train, val, on_epoch=checkpoint_at_2)
    first = SasrecEngine(tiny_config(epochs=2, ema_decay=0.9), data.catalog).fit(data.train, val)
    first.save(tmp_path / "a")
    first.save_training_state(tmp_path / "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "mid"]  # the swap left no partial copies
    assert json.loads((tmp_path / "mid" / "history.json").read_text())[-1]["epoch"] == 2
    with pytest.raises(ValueError, match="exact resume"):  # the optimizer state would silently keep its own lr
        SasrecEngine.for_continuation(tmp_path / "a", dataclasses.replace(cfg, lr=cfg.lr * 2))
    keys = ("loss", "val_ndcg@10", "lr")
    for folder in ("a", "mid"):
        resumed = SasrecEngine.for_continuation(tmp_path / folder, cfg)
        assert resumed.config.epochs == 4 and len(resumed.history) == 2
        resumed.fit(data.train, val, warm_start=True)
        np.testing.assert_allclose([[r[k] for k in keys] for r in resumed.history],
                                   [[r[k] for k in keys] for r in straight.history], rtol=1e-5)
        for a, b in zip(resumed.net.get_weights(), straight.net.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # float32 summation order
    # Without the state (a served artifact), a warm start continues from the best weights with a fresh optimizer.
    first.save(tmp_path / "b")
    assert SasrecEngine.load(tmp_path / "b")._train_state is None
