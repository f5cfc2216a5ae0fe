"""SASRec losses on real positions: chunked CE == padded CE, log-Q correction, gBCE, samplers."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.sasrec.losses import (Sampler, gbce, gbce_beta, padded_size, real_positions, sampled_softmax,
                                  softmax_ce)


def padded_ce(h, table, targets):
    """The computation before losses.py: CE at every [B, L] slot over all N+1 columns (the padding
    column at -1e9), summed over the real positions."""
    logits = tf.einsum("bld,nd->bln", h, table)
    pad_col = tf.one_hot(0, table.shape[0], on_value=-1e9, off_value=0.0)
    per = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits + pad_col)
    return tf.reduce_sum(per * tf.cast(targets > 0, tf.float32))


@pytest.mark.parametrize("chunk_rows", [None, 3, 7])
def test_ce_on_real_positions_equals_the_padded_computation(chunk_rows):
    rng = np.random.default_rng(0)
    B, L, D, N = 4, 9, 8, 50
    h = tf.constant(rng.normal(size=(B, L, D)), tf.float32)
    table = tf.Variable(rng.normal(size=(N + 1, D)), dtype=tf.float32)
    y = rng.integers(1, N + 1, size=(B, L)).astype(np.int32)
    y[rng.random((B, L)) < 0.5] = 0                                   # padding scattered, as in left-padded windows
    pos, w = real_positions(y)
    assert len(pos) >= (y > 0).sum() and w.sum() == (y > 0).sum()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(h)
        old = padded_ce(h, table, tf.constant(y))
        hv = tf.gather(tf.reshape(h, [-1, D]), pos)
        tv = tf.maximum(tf.gather(tf.reshape(tf.constant(y), [-1]), pos), 1)
        new = softmax_ce(hv, tf.identity(table), tv, w, chunk_rows=chunk_rows)
    np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=1e-5)
    for var in (h, table):
        np.testing.assert_allclose(tape.gradient(new, var), tape.gradient(old, var), atol=1e-5)


def test_real_positions_pad_to_few_sizes():
    sizes = {padded_size(m) for m in range(1, 5000)}
    assert sorted(sizes)[:6] == [64, 96, 128, 192, 256, 384] and len(sizes) == 14
    assert all(padded_size(m) >= m and padded_size(m) <= max(64, 1.5 * m) for m in range(1, 5000))


def _learn_logits(sampler_kind: str, correct: bool, steps: int = 100):
    """Fit free item logits (D = 1: every row has the same context) to a Zipf target distribution
    with the sampled softmax; return the slope of the learned logits against log p. The full
    softmax's optimum is logits = log p + c, a slope of 1."""
    n, k = 30, 12
    p = 1.0 / np.arange(1, n + 1)
    counts = np.round(p / p.sum() * 300).astype(int)
    targets = tf.constant(np.repeat(np.arange(n), counts) + 1, tf.int32)
    h, w = tf.ones([len(targets), 1]), tf.ones([len(targets)])
    table = tf.Variable(tf.zeros([n + 1, 1]))
    opt = tf.keras.optimizers.Adam(0.2)
    sampler = Sampler(sampler_kind, n, k, counts)

    @tf.function
    def train():  # the whole loop in one graph: seconds, not a Python call per step
        for i in tf.range(steps):
            with tf.GradientTape() as tape:
                value = tf.reduce_mean(sampled_softmax(h, tf.identity(table), targets, w, sampler,
                                                       tf.stack([0, i]), correct))
            opt.apply_gradients([(tape.gradient(value, table), table)])

    train()
    return np.polyfit(np.log(counts / counts.sum()), table.numpy()[1:, 0], 1)[0]


def test_logq_correction_removes_the_popularity_sampling_bias():
    """Popular items drawn as negatives more often are pushed down: uncorrected popularity sampling
    learns logits nearly flat in log p (it ranks popular items far lower than the full softmax,
    whose slope is 1); with the log-Q correction it learns what the full softmax learns."""
    biased = _learn_logits("popularity", correct=False)
    assert biased < 0.4, biased
    assert _learn_logits("popularity", correct=True) == pytest.approx(1.0, abs=0.15)
    assert _learn_logits("inbatch", correct=True) == pytest.approx(1.0, abs=0.15)


def test_sampled_softmax_masks_accidental_hits_and_padding():
    # Every row's target is item 3, and the in-batch candidates are those same targets: each is an
    # accidental hit, so only the positive is left and the loss is 0 whatever the scores.
    h = tf.constant(np.random.default_rng(1).normal(size=(6, 4)), tf.float32)
    table = tf.constant(np.random.default_rng(2).normal(size=(11, 4)), tf.float32)
    targets = tf.fill([6], 3)
    for kind in ("inbatch", "uniform"):
        sampler = Sampler(kind, 10, 200, np.arange(10))  # 200 uniform draws over 10 items hit item 3 too
        per = sampled_softmax(h, table, targets, tf.ones([6]), sampler, tf.constant([0, 1]))
        if kind == "inbatch":
            np.testing.assert_allclose(per.numpy(), 0.0, atol=1e-6)
        assert np.isfinite(per.numpy()).all()
    # Padding rows (weight 0) are not candidates for the real rows.
    targets = tf.constant([3, 4, 5, 6])
    sampler = Sampler("inbatch", 10, 8)
    with_pad = sampled_softmax(h[:4], table, targets, tf.constant([1.0, 0.0, 0.0, 0.0]), sampler, tf.constant([0, 1]))
    assert with_pad.numpy()[0] == pytest.approx(0.0, abs=1e-6)


def test_popularity_sampler_draws_in_proportion_to_counts():
    counts = np.array([0, 9, 99, 999])                 # q proportional to counts + 1: 1, 10, 100, 1000
    ids, _, log_count, _ = Sampler("popularity", 4, 20000, counts).candidates(tf.ones([2], tf.int32), tf.ones([2]),
                                                                             tf.constant([3, 4]))
    freq = np.bincount(ids.numpy() - 1, minlength=4) / 20000
    np.testing.assert_allclose(freq, [1 / 1111, 10 / 1111, 100 / 1111, 1000 / 1111], atol=0.01)
    np.testing.assert_allclose(np.exp(log_count.numpy()), 20000 * np.array([1, 10, 100, 1000])[ids.numpy() - 1] / 1111,
                               rtol=1e-4)


def test_gbce_is_bce_with_the_positive_raised_to_beta():
    n, k = 100, 4
    assert gbce_beta(k, n, 0.0) == pytest.approx(1.0)                 # t = 0: plain BCE
    assert gbce_beta(k, n, 1.0) == pytest.approx(k / (n - 1))         # t = 1: beta = alpha
    rng = np.random.default_rng(3)
    h = tf.constant(rng.normal(size=(5, 3)), tf.float32)
    table = tf.constant(rng.normal(size=(n + 1, 3)), tf.float32)
    targets = tf.constant([1, 2, 3, 4, 5])
    seed = tf.constant([7, 8])
    got = gbce(h, table, targets, seed, k, n, 0.75).numpy()
    negs = tf.random.stateless_uniform([k], seed, 1, n + 1, tf.int32).numpy()
    hn, tn = h.numpy().astype(np.float64), table.numpy().astype(np.float64)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    beta = gbce_beta(k, n, 0.75)
    for r, t in enumerate(targets.numpy()):
        pos, neg = hn[r] @ tn[t], hn[r] @ tn[negs].T
        keep = negs != t
        want = (-beta * np.log(sig(pos)) - (np.log(1 - sig(neg)) * keep).sum()) / (1 + k)
        assert got[r] == pytest.approx(want, rel=1e-4)
