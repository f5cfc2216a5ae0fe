"""SASRec settings derived from the data, for runs without a config file.

The shipped YAMLs are ML-1M's (dense: ~165 events a user, 3.4k items): max_len 200, full CE, dropout
0.2. On sparse store logs (Amazon-like: median 4 training events, 10k-50k items) a 200-slot window
is almost all padding, and a model that wide overfits a handful of events. `derive_config` reads the shape
of the training data (history lengths, catalog size, users) and the wall-clock budget, and returns
a config plus one sentence per choice saying why, for the trainer to print.

Step times behind the loss choice (this 2-core machine, hidden 64, batch 128, max_len 50, amazon-sports
shapes: 279 steps an epoch, ~680 real targets a step; losses on real positions only): full CE
192 ms/step at 18.4k items (0.9 min/epoch, 1.6 GB peak RSS), 328 ms at 55k (1.5 min/epoch, 1.6 GB);
mixed sampled softmax 89 / 101 ms; gBCE 84 ms at 18.4k. So a CE step costs ~0.12 s plus ~5.4 ns per
target-item logit (680 targets x 25k more items = +136 ms).

Quality per minute (amazon-toys validation NDCG@10, 6-minute budget, hidden 64, dropout 0.5, max_len
50, lr 1e-3, the machine shared): full CE 0.0166 after 7 epochs; sampled softmax with in-batch + 256
uniform negatives, log-Q corrected, 0.0400 after 11 (still rising); gBCE (256 uniform, t 0.75)
0.0009 after 10, below popularity (its calibrated positive term is weak early on; gSASRec trains for
hundreds of epochs). On sparse data each item is a positive only a handful of times per epoch and
CE needs many epochs to get there, so under a budget the cheap, popularity-aware sampled loss wins;
CE is chosen there only when the budget affords `MIN_CE_EPOCHS_SPARSE` of its epochs. Dense data
(ML-1M) is CE's home ground (SASRec+ beats every sampled variant there).

Schedule on sparse data (amazon-toys validation, 30-min budget, chosen on validation only): a constant
lr 1e-3 early-stopped at 42 epochs with best val NDCG@10 0.0688; halving the lr after 3 checks without
improvement (never in the first 15 epochs) plus an EMA of the weights reached 0.0698 at 50 epochs. A
decay allowed from epoch 1 fired during the first epochs' popularity-level plateau and cost a third of
the val NDCG@10 by epoch 11. With that schedule, 1024 uniform negatives instead of 256 (same steps, ~3 ms
more a step) raised the best val NDCG@10 from 0.0698 to 0.0716 (45 epochs, early-stopped).
"""
from __future__ import annotations

import math

import numpy as np

from models.sasrec.config import SasrecConfig
from recdata.dataset import Interactions

# Fixed cost of a step (attention, Adam, input pipeline) and the rate of the full CE's logits, both
# measured here (see above). Conservative: a busier or slower machine gets CE a little later.
STEP_SECONDS = 0.12
CE_LOGITS_PER_SECOND = 1.5e8
# Full CE when the budget allows this many of its epochs; otherwise the sampled loss (see above).
MIN_CE_EPOCHS_DENSE = 25
MIN_CE_EPOCHS_SPARSE = 100
# Without a budget, CE up to this catalog size (memory is bounded by chunking; time grows linearly).
CE_MAX_ITEMS_UNBOUNDED = 50_000
# Uniform negatives of the sampled loss (plus the batch's own targets), at most a quarter of the catalog.
# They add ~3 ms to a ~90 ms step at 1024, and more of them sharpen the ranking near the top (see above).
SAMPLED_NEGATIVES = 1024
VAL_USERS = 10_000  # validation sample above this many users: ~10 s a check here, fixed seed


def ce_epoch_minutes(windows: int, targets: int, n_items: int, batch: int) -> float:
    """Estimated minutes of one full-CE epoch: `windows` training sequences holding `targets`
    real target positions, scored against `n_items` (rates measured on this machine)."""
    return (math.ceil(windows / batch) * STEP_SECONDS + targets * n_items / CE_LOGITS_PER_SECOND) / 60


def derive_config(train: Interactions, budget_minutes: float | None = None,
                  **overrides) -> tuple[SasrecConfig, list[str]]:
    """Config for `train` (the training split) and a wall-clock budget -> (config, reasons)."""
    indptr, _, _ = train.sequences()
    lengths = np.diff(indptr)
    lengths = lengths[lengths > 0]
    if len(lengths) == 0:
        raise ValueError("sasrec: the training split is empty; nothing to derive settings from")
    n_items, n_users = train.n_items, len(lengths)
    median, p99 = float(np.median(lengths)), float(np.percentile(lengths, 99))
    windows = int((lengths >= 2).sum())  # train_windows 'last': one training sequence per such user
    reasons, cfg = [], {}

    # Window: long enough for 99 % of histories whole, in steps of 10; at least 20, at most 200.
    cfg["max_len"] = int(min(200, max(20, math.ceil(p99 / 10) * 10)))
    reasons.append(f"max_len {cfg['max_len']}: 99% of training histories have <= {p99:.0f} events "
                   f"(median {median:.0f}); rounded up to 10, kept within [20, 200]")

    sparse = median < 20
    if sparse:
        cfg.update(hidden=64, heads=1, dropout=0.5, batch=128, train_windows="last")
        reasons.append(f"hidden 64, dropout 0.5: short histories (median {median:.0f} events) overfit a wide "
                       "model; 0.5 is what works on Amazon-like logs")
        cfg.update(lr_decay_factor=0.5, lr_decay_patience=3, lr_decay_after=15, ema_decay=0.998)
        reasons.append("lr halved after 3 checks without a better val NDCG@10 (not in the first 15 epochs, while "
                       "the embeddings form), and a weight average (EMA 0.998) validated beside the raw weights: "
                       "a constant lr plateaus on sparse data while the loss still falls")
    else:
        cfg.update(hidden=128, heads=2, dropout=0.2, batch=128, train_windows="all")
        reasons.append(f"hidden 128, dropout 0.2, every window of long histories: dense data (median "
                       f"{median:.0f} events), the ML-1M settings")

    targets = int(np.minimum(lengths - 1, cfg["max_len"]).sum())
    ce_min = ce_epoch_minutes(windows, targets, n_items, cfg["batch"])
    if budget_minutes is None:
        use_ce = n_items <= CE_MAX_ITEMS_UNBOUNDED
        why = (f"no time budget and {n_items} items <= {CE_MAX_ITEMS_UNBOUNDED}" if use_ce
               else f"{n_items} items > {CE_MAX_ITEMS_UNBOUNDED} make each CE epoch slow")
    else:
        affordable, needed = budget_minutes / ce_min, MIN_CE_EPOCHS_SPARSE if sparse else MIN_CE_EPOCHS_DENSE
        use_ce = affordable >= needed
        why = (f"a CE epoch should take ~{ce_min:.1f} min here ({targets} targets x {n_items} items), so the "
               f"{budget_minutes:g}-min budget allows ~{affordable:.0f} of the >= {needed} it needs on "
               f"{'sparse' if sparse else 'dense'} data")
    if use_ce:
        cfg["loss"] = "ce"
        reasons.append(f"loss ce (full softmax, the strongest): {why}")
    else:
        negatives = int(min(SAMPLED_NEGATIVES, max(1, n_items // 4)))
        cfg.update(loss="sampled", sampler="mixed", negatives=negatives, logq_correction=True)
        reasons.append(f"loss sampled, in-batch + {negatives} uniform negatives, log-Q corrected (cheaper a step than "
                       f"CE, and on sparse data better within a budget): {why}")

    cfg["val_users"] = VAL_USERS if n_users > VAL_USERS else None
    reasons.append(f"validation on a fixed sample of {VAL_USERS} of {n_users} users" if cfg["val_users"]
                   else f"validation on all {n_users} users")
    cfg.update(epochs=200, patience=10, max_train_minutes=budget_minutes)
    reasons.append("epochs <= 200, stop after 10 checks without a better val NDCG@10"
                   + (f", or when the {budget_minutes:g}-min budget is spent (mid-epoch)" if budget_minutes else ""))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return SasrecConfig(**cfg), reasons
