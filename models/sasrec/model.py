"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), in Keras 3 / TF.

A causal Transformer encoder reads a user's last `max_len` items (plus, optionally, their event
types) and predicts the next item at every position. Loss is selectable (losses.py):
- "ce": full softmax cross-entropy over the whole catalog -- "SASRec+" of Klenitskiy & Vasilev,
  "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?" (RecSys 2023), the
  strongest published variant (ML-1M full ranking HR@10 0.3152, NDCG@10 0.1821);
- "sampled": sampled softmax over shared negatives (uniform, popularity, in-batch, mixed), log-Q corrected;
- "gbce": gSASRec's generalized BCE (Petrov & Macdonald, RecSys 2023);
- "bce": the paper's binary cross-entropy with one random negative per position.
Every loss scores only the real (non-padding) target positions.

Item ids are shifted by one inside the network: row 0 of the item table is padding. Sequences are
left-padded and positions count from the *end* (the newest item is position 0), so a history scores
the same whatever the padded length -- training may use shorter windows than serving.
Shapes: B batch, L sequence length, D hidden, H heads, N catalog size.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from models.sasrec.config import SasrecConfig
from models.sasrec.inputs import pad_histories  # noqa: F401  (re-exported)
from models.sasrec.losses import Sampler, bce, gbce, sampled_softmax, softmax_ce


class CausalSelfAttentionBlock(keras.layers.Layer):
    """One Transformer block: masked multi-head self-attention + position-wise feed-forward."""

    def __init__(self, hidden: int, heads: int, dropout: float, pre_ln: bool, **kw):
        super().__init__(**kw)
        self.hidden, self.heads, self.pre_ln = hidden, heads, pre_ln
        self.qkv = keras.layers.Dense(3 * hidden, name="qkv")
        self.proj = keras.layers.Dense(hidden, name="proj")
        self.ffn_in = keras.layers.Dense(hidden, activation="relu", name="ffn_in")
        self.ffn_out = keras.layers.Dense(hidden, name="ffn_out")
        self.ln1 = keras.layers.LayerNormalization(epsilon=1e-8, name="ln1")
        self.ln2 = keras.layers.LayerNormalization(epsilon=1e-8, name="ln2")
        self.drop_att = keras.layers.Dropout(dropout)
        self.drop_res1 = keras.layers.Dropout(dropout)
        self.drop_ffn = keras.layers.Dropout(dropout)
        self.drop_res2 = keras.layers.Dropout(dropout)

    def attention(self, x, allowed, training):
        # x [B, L, D]; allowed [B, 1, L, L] bool (query may attend to key)
        B, L = tf.shape(x)[0], tf.shape(x)[1]
        dh = self.hidden // self.heads
        qkv = tf.reshape(self.qkv(x), [B, L, 3, self.heads, dh])          # [B, L, 3, H, dh]
        q, k, v = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]), axis=0)  # each [B, H, L, dh]
        att = tf.matmul(q, k, transpose_b=True) / math.sqrt(dh)           # [B, H, L, L]
        att = tf.where(allowed, att, tf.cast(-1e9, att.dtype))
        att = self.drop_att(tf.nn.softmax(att, axis=-1), training=training)
        out = tf.transpose(tf.matmul(att, v), [0, 2, 1, 3])               # [B, L, H, dh]
        return self.proj(tf.reshape(out, [B, L, self.hidden]))            # [B, L, D]

    def feed_forward(self, x, training):
        return self.ffn_out(self.drop_ffn(self.ffn_in(x), training=training))

    def call(self, x, allowed, training=False):
        if self.pre_ln:
            x = x + self.drop_res1(self.attention(self.ln1(x), allowed, training), training=training)
            return x + self.drop_res2(self.feed_forward(self.ln2(x), training), training=training)
        x = self.ln1(x + self.drop_res1(self.attention(x, allowed, training), training=training))
        return self.ln2(x + self.drop_res2(self.feed_forward(x, training), training=training))


class SasrecNetwork(keras.Model):
    """Embeddings -> `blocks` causal blocks -> hidden states; scores are dot products with the
    (tied) item embedding table."""

    def __init__(self, config: SasrecConfig, n_items: int, **kw):
        super().__init__(**kw)
        c = self.config = config
        self.n_items = n_items
        self.item_emb = keras.layers.Embedding(n_items + 1, c.hidden, name="item_emb")  # row 0 = pad
        self.pos_emb = keras.layers.Embedding(c.max_len, c.hidden, name="pos_emb")
        self.event_emb = keras.layers.Embedding(4, c.hidden, name="event_emb") if c.use_event_types else None
        self.emb_drop = keras.layers.Dropout(c.dropout)
        self.blocks = [CausalSelfAttentionBlock(c.hidden, c.heads, c.dropout, c.pre_ln, name=f"block{i}")
                       for i in range(c.blocks)]
        self.final_ln = keras.layers.LayerNormalization(epsilon=1e-8, name="final_ln")

    def call(self, items, events=None, training=False):
        """items [B, L] int32 (shifted ids, 0 = pad, left-padded); events [B, L] int32 event codes
        (0 view, 1 cart, 2 purchase) -> hidden states [B, L, D]."""
        L = tf.shape(items)[1]
        real = items > 0                                                   # [B, L]
        x = self.item_emb(items) * math.sqrt(self.config.hidden)           # [B, L, D]
        # expand_dims, not [None]: TFLite's builtin slicing lacks new-axis slices of dynamic shapes.
        x = x + tf.expand_dims(self.pos_emb(tf.range(L - 1, -1, -1)), 0)   # newest item = position 0
        if self.event_emb is not None:
            x = x + self.event_emb(tf.where(real, events + 1, 0))          # 0 = padding type
        keep = tf.expand_dims(tf.cast(real, x.dtype), -1)                  # [B, L, 1]
        x = self.emb_drop(x, training=training) * keep
        causal = tf.linalg.band_part(tf.ones([L, L], tf.bool), -1, 0)      # [L, L] key <= query
        allowed = tf.expand_dims(tf.logical_and(tf.expand_dims(causal, 0), tf.expand_dims(real, 1)), 1)  # [B,1,L,L]
        for block in self.blocks:
            x = block(x, allowed, training=training) * keep
        return self.final_ln(x)                                            # [B, L, D]

    def last_scores(self, items, events=None):
        """Scores of every real item after the newest position: [B, N] (padding column dropped)."""
        h = self(items, events, training=False)[:, -1, :]                  # [B, D]
        return tf.matmul(h, self.item_emb.embeddings[1:], transpose_b=True)


def training_windows(indptr: np.ndarray, items: np.ndarray, events: np.ndarray, max_len: int,
                     all_windows: bool = False):
    """Each user's sequence s -> inputs s[:-1], targets s[1:], the last `max_len` of them, left
    padded: (inputs [W, L], events [W, L], targets [W, L]) int32, shifted ids (0 = pad).
    `all_windows`: a user with more than `max_len` targets also yields the earlier windows (cut
    from the end, `max_len` targets each, the first one left padded), so W can exceed the users."""
    lengths = np.diff(indptr)
    spans = []  # (user, end): the window's targets are s[end - n:end], inputs one step earlier
    for u in np.flatnonzero(lengths >= 2):
        end = int(lengths[u])
        spans.append((u, end))
        while all_windows and end - max_len > 1:
            end -= max_len
            spans.append((u, end))
    inp = np.zeros((len(spans), max_len), np.int32)
    ev = np.zeros_like(inp)
    tgt = np.zeros_like(inp)
    for row, (u, end) in enumerate(spans):
        s, e = items[indptr[u]:indptr[u] + end] + 1, events[indptr[u]:indptr[u] + end]
        n = min(len(s) - 1, max_len)
        inp[row, -n:], ev[row, -n:], tgt[row, -n:] = s[-n - 1:-1], e[-n - 1:-1], s[-n:]
    return inp, ev, tgt


def sequence_loss(net: SasrecNetwork, h, targets, positions, weights, seed, config: SasrecConfig,
                  sampler: Sampler | None = None, denom=None):
    """Loss summed over real target positions / `denom` (default: their count). h [B, L, D];
    targets [B, L] shifted ids (0 = pad); positions, weights [M]: `real_positions(targets)` --
    only those rows are scored against the catalog (see losses.py)."""
    d = net.config.hidden
    hv = tf.gather(tf.reshape(h, [-1, d]), positions)                         # [M, D]
    tv = tf.maximum(tf.gather(tf.reshape(targets, [-1]), positions), 1)       # [M]; padding rows -> any real id
    weights = tf.cast(weights, tf.float32)
    table = tf.identity(tf.cast(net.item_emb.embeddings, h.dtype))            # [N+1, D], a tensor
    n, c = net.n_items, config
    if c.loss == "ce":
        total = softmax_ce(hv, table, tv, weights)
    else:
        if c.loss == "sampled":
            per = sampled_softmax(hv, table, tv, weights, sampler or Sampler("uniform", n, c.negatives), seed,
                                  c.logq_correction)
        elif c.loss == "gbce":
            per = gbce(hv, table, tv, seed, c.negatives, n, c.gbce_t)
        else:
            per = bce(hv, table, tv, seed, n)
        total = tf.reduce_sum(per * weights)
    denom = tf.maximum(tf.reduce_sum(weights), 1.0) if denom is None else denom
    return total / denom
