"""SASRec's resumable state: what an exact resume needs beside an artifact (`train_state/`), atomic
per-epoch checkpoints, and continuing a saved run with a new schedule.

A checkpoint is the artifact with the best weights so far plus `train_state/`: the weights training
had reached, the optimizer's and the weight average's variables, the RNG and the counters. Then
`SasrecEngine.load(folder)` and `fit(..., warm_start=True)` continue as if never stopped, so a long run
can span preemptions or sessions, and a restarted Ray Train worker group or Tune trial goes on.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

TRAIN_STATE = "train_state"  # folder beside the artifact's files
GROUPS = ("current", "generators", "optimizer", "average")
# Config fields a continuation takes from its own run; the rest (the network) comes from the artifact.
SCHEDULE_FIELDS = ("epochs", "max_train_minutes", "lr", "lr_decay_factor", "lr_decay_patience",
                   "lr_decay_after", "patience",
                   "ema_decay")


def save_training_state(engine, folder: str | Path) -> Path:
    """Write `folder/train_state/` for a fitted engine. Kept out of `save`: serving never needs it, and
    it is about 3x the weights."""
    if engine._train_state is None:
        raise RuntimeError("sasrec: no training state; call fit() first")
    st, out = engine._train_state, Path(folder) / TRAIN_STATE
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"{group}_{i:04d}": a for group in GROUPS for i, a in enumerate(st[group] or [])}
    np.savez(out / "arrays.npz", **arrays)
    meta = {k: st[k] for k in ("rng", "step_no", "bad_checks", "since_decay", "stopped_early")}
    meta["counts"] = {g: len(st[g] or []) for g in GROUPS}
    (out / "state.json").write_text(json.dumps(meta))
    return out


def load_training_state(folder: Path) -> dict | None:
    """The state `save_training_state` wrote, or None (a served artifact: warm starts get a fresh optimizer)."""
    meta_file = folder / TRAIN_STATE / "state.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    with np.load(folder / TRAIN_STATE / "arrays.npz") as z:
        groups = {g: [z[f"{g}_{i:04d}"] for i in range(n)] for g, n in meta.pop("counts").items()}
    return {**meta, **groups, "average": groups["average"] or None}


def write(engine, folder: str | Path) -> Path:
    """A resumable snapshot of `engine`. Callable from `on_epoch` while fit() runs (per-epoch
    checkpoints, Ray Train's fault tolerance, Tune trials) and after it. Skips the TFLite export:
    checkpoints are for training, and the export is redone whenever the artifact is saved for serving."""
    if engine._snapshot is None:
        if engine.net is None:
            raise RuntimeError("sasrec: nothing to checkpoint; call fit() first")
        state, weights = engine._train_state, engine.net.get_weights()  # after fit(): the net holds the best
    else:
        state = engine._snapshot()
        weights = state["best"] if state["best"] is not None else state["current"]
    # A plain copy, so that writing never touches the (possibly mirrored) variables training uses.
    copy = type(engine)(engine.config, engine.catalog)
    copy._build().set_weights(weights)
    copy.history, copy._train_state, copy.export_tflite_on_save = list(engine.history), state, False
    # Written beside and swapped in, so a run killed mid-write still leaves the previous checkpoint.
    folder = Path(folder)
    partial, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".old")
    shutil.rmtree(partial, ignore_errors=True)
    copy.save(partial)
    if state is not None:
        save_training_state(copy, partial)
    if folder.exists():
        folder.rename(old)
    partial.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def for_continuation(engine, folder: str | Path, config, catalog=None):
    """`engine` loaded from `folder`, to train further: the network (sizes, vocabulary, weights) comes
    from the artifact, the schedule (epochs, budget, lr, patience, ...) from `config`. `catalog`: the
    data about to be trained on, which must index items as the artifact does."""
    if catalog is not None and not np.array_equal(engine.catalog.item_ids, catalog.item_ids):
        raise ValueError(f"sasrec: {folder} was trained on another item catalog ({engine.n_items} items, this "
                         f"data has {catalog.n_items}); resume it on the data it was trained on, or train afresh")
    if engine._train_state is not None and config.lr != engine.config.lr:
        # The optimizer state holds the lr (and any decay applied to it); a new one would be ignored.
        raise ValueError(f"sasrec: lr {config.lr} for an exact resume of {folder}, which trains at "
                         f"{engine.config.lr}: keep its lr, or delete {TRAIN_STATE}/ to continue with a fresh "
                         "optimizer")
    engine.config = dataclasses.replace(engine.config, **{k: getattr(config, k) for k in SCHEDULE_FIELDS})
    return engine
