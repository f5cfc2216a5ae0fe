"""SASRec configuration: a typed dataclass, loadable from YAML (unknown keys fail).

Kept apart from the network code so that the LiteRT scorer reads an artifact's config without
importing TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from models.ann import AnnConfig, ann_config

LOSSES = ("ce", "sampled", "gbce", "bce")
SAMPLERS = ("uniform", "popularity", "inbatch", "mixed")


@dataclass
class SasrecConfig:
    max_len: int = 200
    """Longest history the model reads (the most recent items); longer ones are cut from the left."""
    blocks: int = 2
    """Number of self-attention blocks."""
    heads: int = 1
    """Attention heads per block; must divide `hidden`."""
    hidden: int = 64
    """Embedding / model width."""
    dropout: float = 0.2
    """Dropout on embeddings, attention weights and feed-forward outputs."""
    loss: str = "ce"
    """'ce': full-softmax cross-entropy over all items (SASRec+, strongest; computed on real target
    positions only, in row chunks, so memory stays bounded on big catalogs); 'sampled': sampled
    softmax over `negatives` negatives from `sampler`, log-Q corrected (big catalogs); 'gbce':
    gSASRec's generalized BCE over `negatives` uniform negatives, calibrated by `gbce_t` (Petrov &
    Macdonald, RecSys 2023); 'bce': the SASRec paper's BCE, one negative."""
    negatives: int = 256
    """Negatives per batch for 'sampled' (shared by every position; 'inbatch' uses the batch's own
    targets instead, 'mixed' adds these to them) and 'gbce'. Ignored by 'ce'; 'bce' uses one."""
    sampler: str = "uniform"
    """Where loss='sampled' draws negatives: 'uniform' over items; 'popularity' in proportion to
    training counts + 1; 'inbatch': the other targets of the batch (popularity-distributed, free);
    'mixed': in-batch targets plus `negatives` uniform ones (Yang et al., WWW 2020)."""
    logq_correction: bool = True
    """loss='sampled': subtract log(expected count of the item among the candidates) from every
    logit (Bengio & Senecal 2008; Yi et al., RecSys 2019). Without it, non-uniform samplers push
    popular items down: the model learns p(item | history) / q(item), not p(item | history)."""
    gbce_t: float = 0.75
    """loss='gbce': calibration t in [0, 1]. beta = alpha * (t * (1 - 1/alpha) + 1/alpha) with
    alpha = negatives / (items - 1); t = 0 is plain BCE, t = 1 fully calibrated (gSASRec: 0.75)."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch: int = 128
    """Training sequences per step."""
    epochs: int = 200
    """Upper bound on epochs; early stopping usually ends training sooner."""
    patience: int = 10
    """Stop after this many validation checks without a better val NDCG@10 (best weights are kept)."""
    eval_every: int = 1
    """Validate every this many epochs."""
    val_users: int | None = 10000
    """Validate on at most this many users: a fixed random sample (seeded by `seed`) when there are
    more, so every check compares the same users; None = all. The test figure always uses all."""
    max_train_minutes: float | None = None
    """Wall-clock budget, checked after every step: training stops mid-epoch once it is spent,
    validates once more (with a validation set) and keeps the best weights; None = none. What the last
    validation took is kept aside, so that the one after the cut ends inside the budget too."""
    train_windows: str = "last"
    """'last': each user trains on their most recent `max_len` targets (the SASRec paper); 'all': a
    history longer than `max_len` is cut, from the end, into consecutive windows that all train, so
    long users' older events are not thrown away (on ML-1M, 35% of the events)."""
    use_event_types: bool = False
    """Add an event-type embedding (view/cart/purchase) to each history position."""
    pre_ln: bool = True
    """Pre-LayerNorm blocks (stable at higher learning rates); False = post-LN (original Transformer)."""
    weight_decay: float = 0.0
    """AdamW weight decay (0 = plain Adam)."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the weights, updated every step with this decay (0 = off;
    0.998 averages the last ~500 steps). Validation scores both the raw and the averaged weights and
    keeps whichever is better: averaging cancels the step-to-step noise of a constant learning rate."""
    lr_decay_factor: float = 1.0
    """Multiply the learning rate by this after `lr_decay_patience` validation checks without a
    better val NDCG@10 (1.0 = constant lr). A constant lr plateaus while the loss still falls: the
    step noise, not the model, limits it then, and a smaller step settles into a better minimum."""
    lr_decay_patience: int = 3
    """Checks without improvement before the learning rate is decayed (each decay restarts the count)."""
    lr_decay_after: int = 0
    """No decay in the first this many epochs: on sparse data the first epochs sit at popularity's level
    while the item embeddings form (amazon-toys: val NDCG@10 flat for 4 epochs, then rising), and a
    decay there would slow the whole run."""
    jit_compile: bool = True
    """Compile the train step with XLA."""
    seed: int = 42
    """Seed for weights, dropout, shuffling and negative sampling."""
    ann: AnnConfig = field(default_factory=AnnConfig)
    """Candidate retrieval: exact below `ann.min_items` catalog items, a FAISS HNSW index over the item
    embeddings above (models/ann.py); the TFLite artifact then also holds `hidden.tflite`."""

    def __post_init__(self) -> None:
        self.ann = ann_config(self.ann)
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not one of {LOSSES}; set loss: ce (SASRec+), sampled or bce")
        for name in ("max_len", "blocks", "heads", "hidden", "batch", "epochs", "patience", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by heads={self.heads}; pick heads dividing it")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if self.train_windows not in ("last", "all"):
            raise ValueError(f"train_windows={self.train_windows!r} must be 'last' or 'all'")
        if self.loss in ("sampled", "gbce") and self.negatives < 1:
            raise ValueError(f"loss={self.loss!r} needs negatives >= 1; set negatives: 256")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler={self.sampler!r} is not one of {SAMPLERS}; set sampler: popularity "
                             "(or uniform, inbatch, mixed)")
        if self.sampler != "uniform" and self.loss != "sampled":
            raise ValueError(f"sampler={self.sampler!r} only applies to loss='sampled' (loss={self.loss!r}); "
                             "set loss: sampled, or sampler: uniform (gBCE's calibration assumes uniform negatives)")
        if not 0.0 <= self.gbce_t <= 1.0:
            raise ValueError(f"gbce_t={self.gbce_t} must be in [0, 1]; gSASRec uses 0.75")
        if self.val_users is not None and (not isinstance(self.val_users, int) or self.val_users < 1):
            raise ValueError(f"val_users={self.val_users!r} must be a positive integer, or null for all users")
        if self.max_train_minutes is not None and self.max_train_minutes <= 0:
            raise ValueError(f"max_train_minutes={self.max_train_minutes} must be > 0, or null for no budget")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay} must be in [0, 1); 0 turns the average off")
        if not 0.0 < self.lr_decay_factor <= 1.0:
            raise ValueError(f"lr_decay_factor={self.lr_decay_factor} must be in (0, 1]; 1.0 keeps the lr constant")
        if not isinstance(self.lr_decay_after, int) or self.lr_decay_after < 0:
            raise ValueError(f"lr_decay_after={self.lr_decay_after!r} must be an integer >= 0 (epochs)")
        if not isinstance(self.lr_decay_patience, int) or self.lr_decay_patience < 1:
            raise ValueError(f"lr_decay_patience={self.lr_decay_patience!r} must be a positive integer")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr} must be > 0")
