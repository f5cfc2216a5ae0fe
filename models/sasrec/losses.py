"""SASRec training losses, computed on the real (non-padding) target positions only.

Sparse logs (Amazon-like: ~6 events a user, 10k-50k items) fill a padded [B, L] window mostly with
padding, so every loss first gathers the real positions (`real_positions`, in numpy before the
compiled step: XLA needs static shapes, so the count is padded up a short ladder of sizes and the
extra rows get weight 0), then scores only those rows:

- `softmax_ce`: full-softmax cross-entropy over the whole catalog (SASRec+; Klenitskiy & Vasilev,
  RecSys 2023), `CE_CHUNK_ELEMENTS` logits at a time, forward and backward (a custom gradient), so
  memory stays bounded whatever the catalog size;
- `sampled_softmax`: softmax over the positive and shared negatives from a `Sampler` (uniform,
  popularity, in-batch, mixed), each logit minus log(its expected count among the candidates) --
  the log-Q correction (Bengio & Senecal 2008; Yi et al., RecSys 2019) that makes the sampled
  gradient estimate the full softmax's; accidental hits (a negative equal to the row's target) masked;
- `gbce`: gSASRec's generalized BCE (Petrov & Macdonald, RecSys 2023): BCE over uniform negatives
  with the positive's probability raised to beta, which undoes the overconfidence negative
  sampling causes; `bce`: the SASRec paper's BCE, one negative per position.
Shapes: M real rows (padded), D hidden, N catalog size, K candidates. Item ids are shifted (0 = pad).
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# Logits held at once by the full CE: 2^24 floats = 64 MB per buffer (a few live at a time).
CE_CHUNK_ELEMENTS = 1 << 24
NEG = -1e9


def padded_size(m: int, smallest: int = 64) -> int:
    """The next size on the ladder smallest * {1, 1.5} * 2^k: few distinct shapes reach XLA (each
    compiles once) and at most a third of the rows are padding."""
    size = smallest
    while size < m:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else (size // 3) * 4
    return size


def real_positions(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """targets [B, L] (0 = pad) -> flat indices of the real positions, padded up `padded_size`
    (positions [M] int32, weights [M] float32: 1 real, 0 padding)."""
    flat = np.flatnonzero(targets.reshape(-1) > 0).astype(np.int32)
    m = padded_size(len(flat))
    pos = np.zeros(m, np.int32)
    pos[:len(flat)] = flat
    weights = np.zeros(m, np.float32)
    weights[:len(flat)] = 1.0
    return pos, weights


def softmax_ce(h, table, targets, weights, chunk_rows: int | None = None):
    """sum_r weights[r] * -log softmax(h[r] . table[1:])[targets[r] - 1] -- a scalar.
    h [M, D]; table [N+1, D] (row 0 = padding, never a class); targets [M] shifted ids (any id >= 1
    on padding rows); weights [M]. Processed `chunk_rows` rows at a time; the gradient is computed
    chunk by chunk in the same pass and handed back by a custom gradient, so neither direction
    holds more than one [chunk_rows, N] block of logits."""
    n = int(table.shape[0]) - 1
    chunk = chunk_rows or max(16, CE_CHUNK_ELEMENTS // max(n, 1))
    targets = tf.cast(targets, tf.int32)
    weights = tf.cast(weights, tf.float32)

    @tf.custom_gradient
    def ce(h, table):
        h32, items = tf.cast(h, tf.float32), tf.cast(table[1:], tf.float32)      # [M, D], [N, D]
        m = tf.shape(h32)[0]
        steps = (m + chunk - 1) // chunk
        pad = steps * chunk - m
        # [S, C, ...]: chunk i is a gather on the leading axis (XLA needs static slice sizes)
        hp = tf.reshape(tf.pad(h32, [[0, pad], [0, 0]]), [steps, chunk, h.shape[-1]])
        tp = tf.reshape(tf.pad(targets - 1, [[0, pad]]), [steps, chunk])       # class index 0..N-1
        wp = tf.reshape(tf.pad(weights, [[0, pad]]), [steps, chunk])

        def body(i, total, grad_h, grad_items):
            hc, tc, wc = hp[i], tp[i], wp[i]
            logits = tf.matmul(hc, items, transpose_b=True)                      # [C, N]
            lse = tf.reduce_logsumexp(logits, -1)                               # [C]
            picked = tf.gather(logits, tc[:, None], batch_dims=1)[:, 0]          # [C]
            total += tf.reduce_sum(wc * (lse - picked))
            # d loss / d logits = w * (softmax - onehot(target))
            d = wc[:, None] * (tf.exp(logits - lse[:, None]) - tf.one_hot(tc, n, dtype=tf.float32))
            grad_h = grad_h.write(i, tf.matmul(d, items))                        # [C, D]
            grad_items += tf.matmul(d, hc, transpose_a=True)                     # [N, D]
            return i + 1, total, grad_h, grad_items

        grads_h = tf.TensorArray(tf.float32, size=steps, element_shape=[chunk, h.shape[-1]])
        _, total, grads_h, grad_items = tf.while_loop(
            lambda i, *_: i < steps, body,
            (tf.constant(0), tf.constant(0.0), grads_h, tf.zeros_like(items)))
        grad_h = grads_h.concat()[:m]

        def grad(upstream):
            g_table = tf.concat([tf.zeros_like(grad_items[:1]), grad_items], 0)  # padding row: 0
            return tf.cast(upstream * grad_h, h.dtype), tf.cast(upstream * g_table, table.dtype)

        return total, grad

    return ce(h, table)


class Sampler:
    """Negatives for the sampled softmax, and log of each candidate's expected count among them.
    `counts` [N]: training interactions per item (dense index); q = (counts + 1) / sum, the +1 so
    that an item never seen in training can still be drawn."""

    def __init__(self, kind: str, n_items: int, negatives: int, counts: np.ndarray | None = None):
        self.kind, self.n, self.k = kind, n_items, negatives
        counts = np.ones(n_items) if counts is None else np.asarray(counts, np.float64) + 1.0
        q = counts / counts.sum()
        self.log_q = tf.constant(np.log(np.concatenate([[1.0], q])), tf.float32)  # [N+1], row 0 unused
        self.cdf = tf.constant(np.cumsum(q), tf.float32)                            # [N]

    def candidates(self, targets, weights, seed):
        """-> (ids [K'] shifted, valid [K'] bool, log expected count [K'] of each candidate, and a
        function: ids -> log expected count of any item under the same scheme)."""
        k, n = self.k, self.n
        m_real = tf.reduce_sum(weights)
        if self.kind in ("uniform", "mixed"):
            drawn = tf.random.stateless_uniform([k], seed, 1, n + 1, tf.int32)
        elif self.kind == "popularity":
            u = tf.random.stateless_uniform([k], seed, 0.0, 1.0)
            drawn = tf.minimum(tf.searchsorted(self.cdf, u, side="right"), n - 1) + 1
        if self.kind == "uniform":
            def log_count(ids):
                return tf.fill(tf.shape(ids), math.log(k / n))
        elif self.kind == "popularity":
            def log_count(ids):
                return math.log(k) + tf.gather(self.log_q, ids)
        elif self.kind == "inbatch":
            def log_count(ids):  # the batch's real targets are M draws from the target distribution
                return tf.math.log(m_real) + tf.gather(self.log_q, ids)
        else:  # mixed: in-batch targets plus k uniform draws
            def log_count(ids):
                return tf.math.log(m_real * tf.exp(tf.gather(self.log_q, ids)) + k / n)
        if self.kind == "inbatch":
            ids, valid = targets, weights > 0
        elif self.kind == "mixed":
            ids = tf.concat([targets, drawn], 0)
            valid = tf.concat([weights > 0, tf.ones([k], tf.bool)], 0)
        else:
            ids, valid = drawn, tf.ones([k], tf.bool)
        return ids, valid, log_count(ids), log_count


def sampled_softmax(h, table, targets, weights, sampler: Sampler, seed, logq_correction: bool = True):
    """Per-row sampled-softmax CE [M] (weighted sum is the caller's). h [M, D]; targets [M]."""
    ids, valid, log_count, log_count_of = sampler.candidates(targets, weights, seed)
    pos = tf.reduce_sum(h * tf.gather(table, targets), -1, keepdims=True)               # [M, 1]
    neg = tf.matmul(h, tf.gather(table, ids), transpose_b=True)                          # [M, K]
    pos, neg = tf.cast(pos, tf.float32), tf.cast(neg, tf.float32)
    if logq_correction:
        pos = pos - log_count_of(targets)[:, None]
        neg = neg - log_count[None, :]
    hit = tf.logical_or(ids[None, :] == targets[:, None], tf.logical_not(valid)[None, :])  # accidental / pad
    neg = tf.where(hit, tf.cast(NEG, neg.dtype), neg)
    logits = tf.concat([pos, neg], -1)                                                    # [M, 1+K]
    return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.zeros_like(targets), logits)


def gbce_beta(negatives: int, n_items: int, t: float) -> float:
    """gSASRec's beta = alpha * (t * (1 - 1/alpha) + 1/alpha), alpha = negatives / (n_items - 1)."""
    alpha = negatives / max(n_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce(h, table, targets, seed, negatives: int, n_items: int, t: float):
    """Per-row gBCE [M]: -log(sigmoid(pos)^beta) - sum log(1 - sigmoid(neg)), averaged over the
    1 + K logits as gSASRec does. Shared uniform negatives; accidental hits dropped."""
    negs = tf.random.stateless_uniform([negatives], seed, 1, n_items + 1, tf.int32)       # [K]
    pos = tf.cast(tf.reduce_sum(h * tf.gather(table, targets), -1), tf.float32)          # [M]
    neg = tf.cast(tf.matmul(h, tf.gather(table, negs), transpose_b=True), tf.float32)    # [M, K]
    keep = tf.cast(negs[None, :] != targets[:, None], tf.float32)
    beta = gbce_beta(negatives, n_items, t)
    return (beta * tf.nn.softplus(-pos) + tf.reduce_sum(keep * tf.nn.softplus(neg), -1)) / (1 + negatives)


def bce(h, table, targets, seed, n_items: int):
    """Per-row BCE [M] with one uniform negative per row (the SASRec paper)."""
    negs = tf.random.stateless_uniform(tf.shape(targets), seed, 1, n_items + 1, tf.int32)
    pos = tf.cast(tf.reduce_sum(h * tf.gather(table, targets), -1), tf.float32)
    neg = tf.cast(tf.reduce_sum(h * tf.gather(table, negs), -1), tf.float32)
    return tf.nn.softplus(-pos) + tf.nn.softplus(neg)                # -log s(pos) - log(1 - s(neg))
