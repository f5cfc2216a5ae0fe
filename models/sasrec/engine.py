"""The SASRec engine: training loop with early stopping, compiled scoring, the artifact.

Training is one XLA-compiled step per batch over fixed-shape windows (no per-example Python); the
loss scores only the batch's real target positions (losses.py). Validation is full-ranking NDCG@10
of the validation item from the train history, seen filtered, on a fixed sample of `val_users`.
A wall-clock budget is checked after every step, so it holds within an epoch too. Resumable state
lives in checkpoint.py, the TFLite export in export.py.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from models.base import Engine
from models.sasrec import checkpoint as resumable  # not `checkpoint`: a method of that name
from models.sasrec.average import WeightAverage
from models.sasrec.config import SasrecConfig
from models.sasrec.export import HIDDEN_FILE, TFLITE_FILE, export_retrieval, export_tflite
from models.sasrec.losses import Sampler, real_positions
from models.sasrec.model import SasrecNetwork, pad_histories, sequence_loss, training_windows
from models.sasrec.progress import EpochProgress
from reccore.constants import VALIDATION_MARGIN
from recdata.dataset import Interactions
from recdata.metrics import RankingEvaluator, mask_seen
from recdata.schema import HistoryBatch

WEIGHTS_FILE = "sasrec.weights.h5"


class SasrecEngine(Engine):
    name = "sasrec"
    config_class = SasrecConfig

    def __init__(self, config: SasrecConfig | None = None, catalog=None):
        super().__init__(config, catalog)
        self.net: SasrecNetwork | None = None
        self.history: list[dict] = []
        self.best_val_ndcg: float | None = None
        self._score_fn = self._hidden_fn = None
        self._train_state: dict | None = None  # set by fit(); saved by save_training_state()
        self._snapshot: Callable[[], dict] | None = None  # set while fit() runs
        self.export_tflite_on_save = True

    # -- network --------------------------------------------------------------------------------
    def _build(self) -> SasrecNetwork:
        keras.utils.set_random_seed(self.config.seed)
        net = SasrecNetwork(self.config, self.n_items)
        L = self.config.max_len
        net(tf.zeros([1, L], tf.int32), tf.zeros([1, L], tf.int32))  # create the variables
        self.net = net
        self._score_fn = self._hidden_fn = None
        self.drop_index()  # new variables: the item index is rebuilt on next use
        return net

    def _scorer(self):
        """A compiled scoring function [B, L] x [B, L] -> [B, N]; traced once for any batch size."""
        if self._score_fn is None:
            net, L = self.net, self.config.max_len
            spec = [tf.TensorSpec([None, L], tf.int32, "items"), tf.TensorSpec([None, L], tf.int32, "events")]
            self._score_fn = tf.function(lambda items, events: net.last_scores(items, events),
                                         input_signature=spec, reduce_retracing=True)
        return self._score_fn

    def score(self, batch: HistoryBatch) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("sasrec: call fit() or SasrecEngine.load() before score()")
        items, events = pad_histories(batch.items, batch.events, self.config.max_len)
        return self._scorer()(tf.constant(items), tf.constant(events)).numpy()  # [B, N]

    # -- candidate retrieval: scores = h_last @ E[1:].T (models/ann.py) ---------------------------
    def item_vectors(self) -> tuple[np.ndarray, None]:
        if self.net is None:
            raise RuntimeError("sasrec: call fit() or SasrecEngine.load() before retrieval")
        return self.net.item_emb.embeddings.numpy()[1:], None                  # [N, D], padding row dropped

    def query_vectors(self, batch: HistoryBatch) -> np.ndarray:
        if self._hidden_fn is None:
            net, L = self.net, self.config.max_len
            spec = [tf.TensorSpec([None, L], tf.int32, "items"), tf.TensorSpec([None, L], tf.int32, "events")]
            self._hidden_fn = tf.function(lambda items, events: net(items, events, training=False)[:, -1, :],
                                          input_signature=spec, reduce_retracing=True)
        items, events = pad_histories(batch.items, batch.events, self.config.max_len)
        return self._hidden_fn(tf.constant(items), tf.constant(events)).numpy()  # [B, D]

    # -- training -------------------------------------------------------------------------------
    def fit(self, train: Interactions, val: Interactions | None = None,
            on_epoch: Callable[[int, dict], None] | None = None, strategy=None,
            shard: tuple[int, int] = (0, 1), warm_start: bool = False, progress: bool = True) -> "SasrecEngine":
        """Train; with `val`, validate every `eval_every` epochs, stop after `patience` checks
        without a better NDCG@10 and keep the best weights. `max_train_minutes` stops training
        mid-epoch; it then validates once more and keeps the best weights (the current ones when
        there is no validation set). `on_epoch(epoch, metrics)` is called after each epoch (MLflow
        logging, progress); `progress`: a bar (terminal) or plain lines (logs) within each epoch.
        `strategy`: a tf.distribute strategy (Ray Train's MultiWorkerMirroredStrategy) --
        gradients are all-reduced across its workers;
        `shard=(rank, world)`: this worker trains on every world-th user from `rank`."""
        c = self.config
        started = time.perf_counter()  # the budget counts from here: the windows are part of the stage's time
        indptr, items, events = train.sequences()
        inp, ev, tgt = training_windows(indptr, items, events, c.max_len, c.train_windows == "all")
        if len(inp) == 0:
            raise ValueError("sasrec: no user has 2+ training events; nothing to learn from")
        rank, world = shard  # data parallel: each worker trains on its own share of users
        per_worker = len(inp) // world if world > 1 else len(inp)  # equal step counts on all workers
        inp, ev, tgt = (a[rank::world][:per_worker] for a in (inp, ev, tgt))
        val_hist = (self._val_histories(indptr, items, events, val, c.val_users, c.seed)
                    if val is not None else None)
        return self.fit_windows(inp, ev, tgt, val_hist, np.bincount(items, minlength=self.n_items), on_epoch=on_epoch,
                                strategy=strategy, warm_start=warm_start, progress=progress, started=started)

    def fit_windows(self, inp: np.ndarray, ev: np.ndarray, tgt: np.ndarray, val_hist=None,
                    item_counts: np.ndarray | None = None, on_epoch: Callable[[int, dict], None] | None = None,
                    strategy=None, warm_start: bool = False, progress: bool = True,
                    evaluate: Callable[[HistoryBatch, np.ndarray], dict] | None = None,
                    started: float | None = None) -> "SasrecEngine":
        """`fit` on ready training windows -- this worker's share when data parallel (Ray Train feeds
        each worker its shard through Ray Data, trainers/train_sasrec.py): inputs, events, targets
        [W, L] as `training_windows` makes them; `val_hist`: (histories, targets) of the validation
        users; `item_counts`: training occurrences per item over all the data (the popularity samplers
        need them); `evaluate(histories, targets) -> metrics`: validation (default: `_evaluate`; data
        parallel: each worker scores its share of the validation users and the means are combined, so
        every worker takes the same early-stopping decision); `started`: when the budget began (default:
        now; `fit` passes its own start, so building the windows counts)."""
        c = self.config
        evaluate = evaluate or self._evaluate
        if len(inp) == 0:
            raise ValueError("sasrec: no training windows on this worker; nothing to learn from")
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            # warm_start: continue from the loaded/trained weights. The network is rebuilt in this
            # scope either way: a strategy must own the variables it mirrors.
            reached = self.net.get_weights() if warm_start and self.net is not None else None
            net = self._build()
            if reached is not None:
                net.set_weights(reached)
            opt = (keras.optimizers.AdamW(c.lr, weight_decay=c.weight_decay) if c.weight_decay
                   else keras.optimizers.Adam(c.lr))
            opt.build(net.trainable_variables)
            average = WeightAverage(net.trainable_variables, c.ema_decay) if c.ema_decay else None
        if c.loss == "sampled" and item_counts is None:
            raise ValueError("sasrec: the sampled loss needs item_counts (training occurrences per item)")
        # Item popularity for the non-uniform samplers: how often each item occurs in training.
        sampler = Sampler(c.sampler, self.n_items, c.negatives, item_counts) if c.loss == "sampled" else None

        replicas = getattr(strategy, "num_replicas_in_sync", 1)

        def step(x, e, y, pos, w, seed, denom):
            with tf.GradientTape() as tape:
                loss = sequence_loss(net, net(x, e, training=True), y, pos, w, seed, c, sampler, denom)
                # Keras sums gradients over replicas (all-reduce); scale so the update is their mean.
                scaled = loss / replicas
            grads = tape.gradient(scaled, net.trainable_variables)
            opt.apply_gradients(zip(grads, net.trainable_variables))
            return loss

        if strategy is None:
            train_step = tf.function(step, jit_compile=c.jit_compile, reduce_retracing=True)
        else:
            inner = tf.function(step)

            @tf.function
            def train_step(x, e, y, pos, w, seed, denom):
                per = strategy.run(inner, args=(x, e, y, pos, w, seed, denom))
                return strategy.reduce(tf.distribute.ReduceOp.MEAN, per, axis=None)

        lengths = (tgt > 0).sum(1)
        # Loss is a sum over tokens / a fixed count, so every target position weighs the same
        # whatever the length of the sequences its batch holds.
        denom = tf.constant(float(c.batch * lengths.mean()))
        rng = np.random.default_rng(c.seed)

        best, best_weights, bad_checks, since_decay, step_no = -1.0, None, 0, 0, 0
        # The budget keeps aside what the last validation and the last step took, so that a cut's step and
        # the validation after it end inside it.
        reserve, step_seconds = 0.0, 0.0
        started = started if started is not None else time.perf_counter()  # `fit` passes its own start
        deadline = started + 60 * c.max_train_minutes if c.max_train_minutes is not None else None
        done = len(self.history) if warm_start else 0
        if warm_start and self.history:
            best = max([r["val_ndcg@10"] for r in self.history if "val_ndcg@10" in r] or [-1.0])
            best_weights = net.get_weights()  # the artifact holds the best weights so far
        state = self._train_state if warm_start else None
        if state is not None:
            # Exact resume: the weights training had reached (not the best ones), Adam's moments and step,
            # the average, the shuffling RNG and the stopping counters, as the interrupted run left them.
            net.set_weights(state["current"])
            for var, value in zip(net.non_trainable_variables, state["generators"]):  # dropout's RNG state
                var.assign(value)
            for var, value in zip(opt.variables, state["optimizer"]):
                var.assign(value)
            if average is not None and state.get("average") is not None:
                for var, value in zip(average.shadow, state["average"]):
                    var.assign(value)
            rng.bit_generator.state = state["rng"]
            step_no, bad_checks, since_decay = state["step_no"], state["bad_checks"], state["since_decay"]
        self.history = self.history if warm_start else []

        def snapshot() -> dict:  # what an exact resume needs, as of the last finished epoch
            return {
                "current": net.get_weights(), "best": best_weights,
                "generators": [_value(v, array=True) for v in net.non_trainable_variables],
                "optimizer": [_value(v, array=True) for v in opt.variables],
                "average": [_value(v, array=True) for v in average.shadow] if average is not None else None,
                "rng": rng.bit_generator.state, "step_no": step_no, "bad_checks": bad_checks,
                "since_decay": since_decay, "stopped_early": bool(val_hist is not None and bad_checks >= c.patience)}

        self._snapshot = snapshot  # checkpoint() reads it while training runs
        for epoch in range(done + 1, c.epochs + 1):
            t0, out_of_time = time.perf_counter(), False
            batches = length_buckets(lengths, c.batch, c.max_len, rng)
            bar = EpochProgress(epoch, len(batches), enabled=progress)
            for rows, width in batches:
                stepping = time.perf_counter()
                step_no += 1
                y_np = tgt[rows, -width:]
                pos, w = real_positions(y_np)
                x, e = tf.constant(inp[rows, -width:]), tf.constant(ev[rows, -width:])
                loss = train_step(x, e, tf.constant(y_np), tf.constant(pos), tf.constant(w),
                                  tf.constant([c.seed, step_no], tf.int32), denom)
                if average is not None:
                    average.update()
                bar.update(float(loss) * float(denom) / max(float(w.sum()), 1.0))  # mean loss per real target
                step_seconds = time.perf_counter() - stepping
                if deadline is not None and time.perf_counter() + reserve + step_seconds > deadline:
                    out_of_time = True  # the budget holds within an epoch too
                    break
            bar.close()
            if deadline is not None and time.perf_counter() + reserve + step_seconds > deadline and epoch < c.epochs:
                out_of_time = True  # no time for another epoch: validate this one, it may be the best
            rec = {"epoch": epoch, "loss": bar.loss_sum / max(bar.done, 1), "epoch_seconds": time.perf_counter() - t0,
                   "lr": _value(opt.learning_rate), "steps": bar.done, "steps_per_epoch": len(batches)}
            if out_of_time and bar.done < len(batches):
                rec["stopped_mid_epoch"] = True
            if val_hist is not None and (epoch % c.eval_every == 0 or epoch == c.epochs or out_of_time):
                validating = time.perf_counter()
                val, weights = evaluate(*val_hist), None
                if average is not None:
                    # Validate the averaged weights too; `val_*` are the metrics of the better one.
                    rec.update({"val_raw_ndcg@10": val["ndcg@10"], "val_weights": "raw"})
                    with average.applied():
                        val_avg = evaluate(*val_hist)
                        rec["val_ema_ndcg@10"] = val_avg["ndcg@10"]
                        if val_avg["ndcg@10"] > val["ndcg@10"]:
                            val, weights, rec["val_weights"] = val_avg, net.get_weights(), "ema"
                rec.update({f"val_{k}": v for k, v in val.items()})
                if rec["val_ndcg@10"] > best:
                    best, best_weights, bad_checks, since_decay = rec["val_ndcg@10"], weights or net.get_weights(), 0, 0
                else:
                    bad_checks, since_decay = bad_checks + 1, since_decay + 1
                reserve = VALIDATION_MARGIN * (time.perf_counter() - validating)
                if c.lr_decay_factor < 1.0 and since_decay >= c.lr_decay_patience and epoch > c.lr_decay_after:
                    opt.learning_rate.assign(_value(opt.learning_rate) * c.lr_decay_factor)
                    since_decay = 0
            self.history.append(rec)
            if on_epoch is not None:
                on_epoch(epoch, rec)
            if val_hist is not None and bad_checks >= c.patience:
                break
            if out_of_time or (deadline is not None and time.perf_counter() + reserve + step_seconds > deadline):
                break
        self._train_state, self._snapshot = self._snapshot(), None
        if best_weights is not None:
            net.set_weights(best_weights)
        self.best_val_ndcg = best if best >= 0 else None
        self.drop_index()  # the weights kept are not the ones any index was built from
        return self

    # -- resumable state (models/sasrec/checkpoint.py) -----------------------------------------
    def save_training_state(self, folder: str | Path) -> Path:
        """Write `folder/train_state/` beside a saved artifact (see checkpoint.save_training_state)."""
        return resumable.save_training_state(self, folder)

    def checkpoint(self, folder: str | Path) -> Path:
        """A resumable snapshot, callable from `on_epoch` while fit() runs (see checkpoint.write)."""
        return resumable.write(self, folder)

    @classmethod
    def for_continuation(cls, folder: str | Path, config: SasrecConfig, catalog=None) -> "SasrecEngine":
        """Load an artifact or checkpoint to train further (see checkpoint.for_continuation)."""
        return resumable.for_continuation(cls.load(folder), folder, config, catalog)

    @staticmethod
    def _val_histories(indptr, items, events, val: Interactions, limit: int | None = None, seed: int = 0):
        """(train histories, validation targets) of the validation users -- a fixed random sample
        of `limit` of them when there are more: the same users at every check, so checks compare."""
        f = val.frame
        users, targets = f["uidx"].to_numpy(), f["iidx"].to_numpy()
        if limit is not None and len(users) > limit:
            keep = np.sort(np.random.default_rng(seed).choice(len(users), limit, replace=False))
            users, targets = users[keep], targets[keep]
        hist = HistoryBatch([items[indptr[u]:indptr[u + 1]] for u in users],
                            [events[indptr[u]:indptr[u + 1]] for u in users], users)
        return hist, targets

    def _evaluate(self, hist: HistoryBatch, targets: np.ndarray, batch_size: int = 1024) -> dict:
        ev = RankingEvaluator(self.n_items, (10, 20))
        for lo in range(0, len(hist), batch_size):
            sub = HistoryBatch(hist.items[lo:lo + batch_size], hist.events[lo:lo + batch_size])
            scores = self.score(sub).astype(np.float64)
            ev.add(mask_seen(scores, sub.items), targets[lo:lo + batch_size])
        r = ev.result()
        return {k: r[k] for k in ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr")}

    # -- artifact -------------------------------------------------------------------------------
    def _save_weights(self, folder: Path) -> None:
        self.net.save_weights(folder / WEIGHTS_FILE)
        if self.export_tflite_on_save:
            export_tflite(self.net, self.config, self.n_items, folder / TFLITE_FILE)
            if self.uses_ann:  # the LiteRT replica retrieves through the index: it needs h, not [B, N]
                export_retrieval(self.net, folder / HIDDEN_FILE)
        (folder / "history.json").write_text(json.dumps(self.history, indent=1))

    def _load_weights(self, folder: Path) -> None:
        self._build().load_weights(folder / WEIGHTS_FILE)
        hist = folder / "history.json"
        self.history = json.loads(hist.read_text()) if hist.exists() else []
        self._train_state = resumable.load_training_state(folder)
        vals = [r["val_ndcg@10"] for r in self.history if "val_ndcg@10" in r]
        self.best_val_ndcg = max(vals) if vals else None


def _value(variable, array: bool = False):
    """A variable's value in eager mode, also for the distributed (mirrored) variables that Ray
    Train's strategy creates, which neither `float()` nor `.numpy()` accept."""
    value = tf.convert_to_tensor(variable).numpy()
    return value if array else float(value)


def length_buckets(lengths: np.ndarray, batch: int, max_len: int, rng: np.random.Generator,
                   pool: int = 16, step: int = 40):
    """One epoch of (row indices, window width) batches: users shuffled, then sorted by length
    inside pools of `pool` batches so a batch's sequences have similar lengths and its window is cut
    to the longest (rounded up to `step`, so few distinct shapes reach XLA); batch order shuffled."""
    perm = rng.permutation(len(lengths))
    out = []
    for lo in range(0, len(perm), batch * pool):
        chunk = perm[lo:lo + batch * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        for b in range(0, len(chunk), batch):
            rows = np.sort(chunk[b:b + batch])
            width = min(max_len, int(np.ceil(lengths[rows].max() / step)) * step)
            out.append((rows, width))
    return [out[i] for i in rng.permutation(len(out))]
