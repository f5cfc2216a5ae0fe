"""Discovery engine: Mult-VAE (Liang, Krishnan, Hoffman & Jebara, "Variational Autoencoders for
Collaborative Filtering", WWW 2018) through cornac's `VAECF`.

cornac builds the network (`cornac.models.vaecf.vaecf.VAE`: items -> hidden -> (mu, logvar) ->
hidden -> items, multinomial likelihood) and, with `recipe="cornac"`, trains it with its own loop.
That loop binarizes the input and uses a fixed KL weight, so the default `recipe="mult-vae"` trains
the same module with the paper's recipe instead: event-weighted inputs (view < cart < purchase),
L2-normalized and dropped out on the way in, KL weight annealed from 0 to `beta_max`, shuffled
batches, and the epoch with the best validation Recall@20 kept.

Scoring is fold-in: any history (a known user's or a brand-new one's) is encoded to mu and decoded
to a score per item, so unseen users get personal candidates without retraining. After `fit`, and
in a loaded artifact, the forward pass runs on plain numpy weights (`vae.npz`): a Serve replica
needs neither cornac nor torch.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from models.ann import AnnConfig, ann_config
from models.base import Engine
from models.vae.data import interaction_matrix, to_cornac
from reccore.constants import VALIDATION_MARGIN
from reccore.threads import ThreadLimit
from recdata.dataset import VAL, VAL_FOLD_IN, Interactions
from recdata.evaluation import sample_users
from recdata.metrics import RankingEvaluator, mask_seen
from recdata.schema import EventWeights, HistoryBatch

ACTIVATIONS = ("tanh", "sigmoid", "relu", "elu")
_THREADS = ThreadLimit()  # validation's numpy BLAS held to torch_threads: on a shared CPU two threads ran slower
VALIDATION_BATCH = 1024  # users scored at once while validating (a batch x items float64 block)


@dataclass
class VAEConfig:
    hidden: list[int] = field(default_factory=lambda: [600])
    """Encoder hidden layer sizes (the decoder mirrors them); the paper uses [600]."""
    latent: int = 200
    """Dimension of the user code z (cornac's `k`); the paper uses 200."""
    act_fn: str = "tanh"
    """Activation between layers: tanh | sigmoid | relu | elu."""
    likelihood: str = "mult"
    """cornac likelihood; `mult` (multinomial) is Mult-VAE, the only one the mult-vae recipe trains."""
    recipe: str = "mult-vae"
    """`mult-vae`: the paper's training recipe on cornac's module; `cornac`: `VAECF.fit` as is
    (binary input, fixed beta = beta_max, no dropout; event weights are then ignored)."""
    epochs: int = 150
    """Passes over the training users."""
    batch_size: int = 500
    """Users per gradient step."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam L2 penalty."""
    beta_max: float = 0.2
    """Cap of the KL weight (the paper's anneal_cap)."""
    anneal_steps: int = 0
    """Gradient steps over which beta grows linearly from 0 to beta_max; 0 = over the whole run."""
    input_dropout: float = 0.5
    """Dropout on the normalized input while training (the paper: 0.5)."""
    event_weights: dict = field(default_factory=lambda: {"view": 1.0, "cart": 3.0, "purchase": 5.0})
    """Input strength of each event type; must satisfy 0 < view <= cart <= purchase."""
    eval_every: int = 5
    """Epochs between validation checks (Recall@20); the best epoch's weights are kept."""
    val_users: int | None = 20_000
    """Validation checks during training use a fixed seeded sample of this many users (null: all):
    each check scores users x items, which at 10^5 items would cost more than the epoch it judges."""
    max_train_minutes: float = 0.0
    """Wall-clock budget of training (0: none). Checked after every gradient step, so it holds within an
    epoch: the epoch in progress stops, is validated, and the best validated weights are kept. It counts
    from the start of `fit` and keeps aside what a validation and a step take, so that the last
    validation ends inside it too."""
    seed: int = 0
    """Seed for initialization, shuffling and dropout."""
    torch_threads: int = 0
    """torch intra-op threads while training, and numpy's BLAS threads while validating; 0 keeps the
    defaults. 1 is often fastest on a shared, oversubscribed machine (idle threads spin-wait)."""
    ann: AnnConfig = field(default_factory=AnnConfig)
    """Top-k retrieval: exact below `ann.min_items` catalog items, a FAISS HNSW index above (models/ann.py)."""

    def __post_init__(self) -> None:
        self.weights = EventWeights(**self.event_weights)  # validates, with the fix in its error
        self.ann = ann_config(self.ann)
        if self.act_fn not in ACTIVATIONS:
            raise ValueError(f"act_fn {self.act_fn!r} not supported; use one of {ACTIVATIONS}")
        if self.recipe not in ("mult-vae", "cornac"):
            raise ValueError(f"recipe {self.recipe!r} unknown; use mult-vae or cornac")
        if self.recipe == "mult-vae" and self.likelihood != "mult":
            raise ValueError("the mult-vae recipe trains likelihood=mult; use recipe=cornac for others")
        if not self.hidden or self.latent < 1 or self.epochs < 0 or self.batch_size < 1:
            raise ValueError("hidden must be non-empty and latent, batch_size >= 1, epochs >= 0")
        if not 0.0 <= self.input_dropout < 1.0:
            raise ValueError("input_dropout must be in [0, 1)")
        if self.val_users is not None and (not isinstance(self.val_users, int) or self.val_users < 1):
            raise ValueError(f"val_users={self.val_users!r} must be a positive integer, or null for all users")
        if self.max_train_minutes < 0:
            raise ValueError(f"max_train_minutes={self.max_train_minutes} must be >= 0 (0: no budget)")


def _activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    return {"tanh": np.tanh, "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
            "relu": lambda x: np.maximum(x, 0.0), "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0)))}[name]


class VAEEngine(Engine):
    name = "vae"
    config_class = VAEConfig

    def __init__(self, config=None, catalog=None):
        super().__init__(config, catalog)
        self.params: dict[str, np.ndarray] | None = None   # the exported state_dict, as numpy
        self.history: list[dict] = []                       # per-epoch loss / beta / val recall

    # -- fold-in forward pass (numpy; the only scoring path, trained or loaded) -------------------
    def _inputs(self, batch: HistoryBatch) -> np.ndarray:
        """Histories -> [B, n_items] event-weighted rows, strongest event per item, then
        L2-normalized (mult-vae) or binarized (cornac recipe), as in training."""
        x = np.zeros((len(batch), self.n_items), np.float32)
        w = self.config.weights.as_array()
        for b, (items, events) in enumerate(zip(batch.items, batch.events)):
            items, events = np.asarray(items, np.int64), np.asarray(events, np.int64)
            known = (items >= 0) & (items < self.n_items)              # unknown ids (-1) carry nothing
            np.maximum.at(x[b], items[known], w[events[known]])
        return self._preprocess(x)

    def _preprocess(self, x: np.ndarray) -> np.ndarray:
        if self.config.recipe == "cornac":
            return (x > 0).astype(np.float32)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.maximum(norm, 1e-12)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """[B, n_items] preprocessed input -> mu [B, latent] (the deterministic user code)."""
        act, p = _activation(self.config.act_fn), self.params
        # The input is sparse (a history touches a handful of items): only those items' columns of the first
        # layer contribute, so fold-in costs O(history x hidden) instead of O(catalog x hidden) -- at 10^5
        # items the dense product was most of a /recommend.
        cols = np.flatnonzero(x.any(axis=0))
        h = act(x[:, cols] @ p["encoder.fc0.weight"][:, cols].T + p["encoder.fc0.bias"])   # [B, hidden_0]
        for i in range(1, len(self.config.hidden)):                    # [B, hidden_i]
            h = act(h @ p[f"encoder.fc{i}.weight"].T + p[f"encoder.fc{i}.bias"])
        return h @ p["enc_mu.weight"].T + p["enc_mu.bias"]             # [B, latent]

    def decode(self, z: np.ndarray) -> np.ndarray:
        """mu [B, latent] -> logits [B, n_items] (softmax of these is the multinomial)."""
        W, b = self.item_vectors()
        return self.decoder_hidden(z) @ W.T + b                        # [B, n_items]

    def decoder_hidden(self, z: np.ndarray) -> np.ndarray:
        """mu [B, latent] -> the decoder's last hidden layer [B, hidden_0]: everything but the final
        linear layer, whose rows are the item vectors (so logits are a maximum inner product search)."""
        act, p = _activation(self.config.act_fn), self.params
        h = z
        for i in range(len(self.config.hidden)):
            h = act(h @ p[f"decoder.fc{i}.weight"].T + p[f"decoder.fc{i}.bias"])
        return h

    def item_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The decoder's last linear layer: weight [n_items, hidden_0] and bias [n_items]."""
        if self.params is None:
            raise RuntimeError("vae: not trained; call fit() or VAEEngine.load(artifact)")
        n = len(self.config.hidden)
        return self.params[f"decoder.fc{n}.weight"], self.params[f"decoder.fc{n}.bias"]

    def query_vectors(self, batch: HistoryBatch) -> np.ndarray:
        """Histories -> [B, hidden_0] user vectors (fold-in), the query side of `item_vectors`."""
        return self.decoder_hidden(self.encode(self._inputs(batch)))

    def score(self, batch: HistoryBatch) -> np.ndarray:
        if self.params is None:
            raise RuntimeError("vae: not trained; call fit() or VAEEngine.load(artifact)")
        out = np.empty((len(batch), self.n_items), np.float32)
        for lo in range(0, len(batch), 1024):                          # bounded memory per chunk
            sub = HistoryBatch(batch.items[lo:lo + 1024], batch.events[lo:lo + 1024])
            out[lo:lo + len(sub)] = self.decode(self.encode(self._inputs(sub)))
        return out                                                     # [B, n_items] logits

    # -- training -----------------------------------------------------------------------------
    def fit(self, train: Interactions, val: Interactions | None = None, on_epoch=None, on_step=None) -> "VAEEngine":
        """Train for `config.epochs` (or until `max_train_minutes`); with `val`, keep the epoch with the
        best validation Recall@20. `on_step(step, total_steps)` after every gradient step."""
        for row in self.train_epochs(train, val, on_step=on_step):
            if on_epoch:
                on_epoch(row)
        self.drop_index()  # new weights: the item index is rebuilt on next use
        return self

    def train_epochs(self, train: Interactions, val: Interactions | None = None, start_epoch: int = 0,
                     on_step: Callable[[int, int], None] | None = None):
        """Generator: trains one epoch per step and yields its log row ({epoch, loss, beta} plus
        `val_*` metrics every `eval_every` epochs, and `stopped: "budget"` on the last epoch when
        `max_train_minutes` ends training before `epochs`: that epoch, cut short or not, is validated).
        `self.params` always holds the weights to serve (the best validated epoch so far).
        `start_epoch` > 0 continues from `self.params`."""
        import torch
        from cornac.models import VAECF
        from cornac.models.vaecf.vaecf import VAE

        c = self.config
        # The budget counts from here: building the matrix and the network is part of the stage's time.
        deadline = time.monotonic() + 60 * c.max_train_minutes if c.max_train_minutes else None
        if self.catalog is not None and train.n_items != self.n_items:
            raise ValueError(f"train has {train.n_items} items but the catalog {self.n_items}")
        torch.manual_seed(c.seed + start_epoch)
        if c.torch_threads:
            torch.set_num_threads(c.torch_threads)
        data = to_cornac(train, c.weights)
        self.cornac_model = VAECF(
            k=c.latent, autoencoder_structure=list(c.hidden), act_fn=c.act_fn, likelihood=c.likelihood,
            n_epochs=c.epochs, batch_size=c.batch_size, learning_rate=c.lr, beta=c.beta_max, seed=c.seed,
        )
        if c.recipe == "cornac":  # cornac's own loop, as shipped
            self.cornac_model.fit(data)
            self.params = _numpy_state(self.cornac_model.vae)
            yield {"epoch": c.epochs}
            return
        vae = self.cornac_model.vae = VAE(c.latent, [train.n_items] + list(c.hidden), c.act_fn, c.likelihood)
        if start_epoch and self.params is not None:
            vae.load_state_dict({k: torch.from_numpy(v) for k, v in self.params.items()})
        X = data.matrix.astype(np.float32)                             # [n_users, n_items] weights
        rng = np.random.default_rng(c.seed + start_epoch)
        opt = torch.optim.Adam(vae.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        users = np.flatnonzero(np.diff(X.indptr) > 0)                  # users with any training event
        steps_per_epoch = -(-len(users) // c.batch_size)
        anneal = c.anneal_steps or max(1, steps_per_epoch * c.epochs)
        val_set = self._validation_set(X, val) if val is not None and len(val) else None
        if not start_epoch:
            self.history = []
        best = max((r["val_recall@20"] for r in self.history if "val_recall@20" in r), default=-1.0)
        step = start_epoch * steps_per_epoch
        total_steps = steps_per_epoch * c.epochs
        # The budget keeps aside what validating takes (estimated from one timed batch, then measured; times
        # VALIDATION_MARGIN) and one more step (the last one's time): the validation after a cut ends inside it.
        reserve = 0.0
        if deadline is not None and val_set is not None:
            with _THREADS(c.torch_threads):
                reserve = VALIDATION_MARGIN * self._validation_seconds(vae, *val_set)
        step_seconds = 0.0

        def out_of_time() -> bool:  # no room left for one more step and the validation after it
            return deadline is not None and time.monotonic() + reserve + step_seconds >= deadline

        for epoch in range(start_epoch + 1, c.epochs + 1):
            vae.train()
            total, seen, stopped = 0.0, 0, False
            order = rng.permutation(users)
            for lo in range(0, len(users), c.batch_size):
                stepping = time.monotonic()
                ids = order[lo:lo + c.batch_size]
                beta = min(c.beta_max, c.beta_max * step / anneal)
                loss = self._loss(vae, X[ids], beta, rng)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(ids)
                seen += len(ids)
                step += 1
                if on_step:
                    on_step(step, total_steps)
                step_seconds = time.monotonic() - stepping
                if out_of_time():
                    stopped = True
                    break
            if not stopped and out_of_time() and epoch < c.epochs:
                stopped = True  # the budget ends on the epoch's last step: validate it as a cut epoch
            row = {"epoch": epoch, "loss": total / seen, "beta": beta}
            current = _numpy_state(vae)
            if val_set is None:
                self.params = current
            elif epoch % c.eval_every == 0 or epoch == c.epochs or stopped:
                prev, self.params = self.params, current
                started = time.monotonic()
                with _THREADS(c.torch_threads):  # numpy's BLAS on the stage's threads, as training
                    row.update(self._validate(*val_set))
                reserve = VALIDATION_MARGIN * (time.monotonic() - started)
                if row["val_recall@20"] > best:
                    best, row["best"] = row["val_recall@20"], True
                else:
                    self.params = prev
            elif self.params is None:
                self.params = current
            # Stopped on the budget: cut in the epoch, or no time left after it for one more step and validation.
            if stopped or (out_of_time() and epoch < c.epochs):
                row["stopped"] = "budget"
            self.history.append(row)
            yield row
            if "stopped" in row:
                return

    def _loss(self, vae, xb: sp.csr_matrix, beta: float, rng: np.random.Generator):
        """Negative ELBO of a batch, with cornac's module parameters and the paper's recipe. The
        input is sparse (a user touches ~5 % of items), so the first layer is a sparse matmul."""
        import torch

        c = self.config
        xb = xb.tocoo()
        norm = np.sqrt(np.bincount(xb.row, weights=xb.data.astype(np.float64) ** 2, minlength=xb.shape[0]))
        vals = xb.data / np.maximum(norm[xb.row], 1e-12)               # L2-normalized rows
        keep = rng.random(len(vals)) >= c.input_dropout                # dropout on the input
        vals = np.where(keep, vals / (1.0 - c.input_dropout), 0.0).astype(np.float32)
        idx = torch.from_numpy(np.vstack([xb.row, xb.col]).astype(np.int64))
        x_in = torch.sparse_coo_tensor(idx, torch.from_numpy(vals), xb.shape, check_invariants=False)  # [b, n_items]
        fc0 = vae.encoder.fc0
        h = vae.act_fn(torch.sparse.mm(x_in, fc0.weight.T) + fc0.bias)               # [b, hidden0]
        for i in range(1, len(c.hidden)):
            h = vae.act_fn(getattr(vae.encoder, f"fc{i}")(h))
        mu, logvar = vae.enc_mu(h), vae.enc_logvar(h)                                # [b, latent] x2
        z = vae.reparameterize(mu, logvar)
        log_p = torch.log_softmax(vae.decoder(z), dim=1)                             # [b, n_items]
        target = torch.from_numpy(xb.data.astype(np.float32))
        ll = torch.zeros(xb.shape[0]).index_add_(0, idx[0], target * log_p[idx[0], idx[1]])  # [b]
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)               # [b]
        return torch.mean(beta * kl - ll)

    def _validation_set(self, X: sp.csr_matrix, val: Interactions):
        """(histories, targets) for validation users: their fold-in rows when `val` carries them
        (user-holdout), otherwise their training rows (leave-one-out)."""
        f = val.frame
        split = f["split"].to_numpy() if "split" in f else np.full(len(f), VAL)
        tgt = f.loc[split != VAL_FOLD_IN]
        users = sample_users(np.unique(tgt["uidx"].to_numpy()), self.config.val_users, self.config.seed)
        tgt = tgt.loc[tgt["uidx"].isin(users)]
        if (split == VAL_FOLD_IN).any():
            H = interaction_matrix(Interactions(f.loc[split == VAL_FOLD_IN], val.n_users, val.n_items),
                                   self.config.weights)
        else:
            H = X
        hist = H[users]
        targets = tgt.groupby("uidx")["iidx"].apply(np.asarray).reindex(users).tolist()
        return hist, targets

    def _validation_seconds(self, vae, hist: sp.csr_matrix, targets: list) -> float:
        """What a validation will take, from one timed batch of it (the current weights)."""
        prev, self.params = self.params, _numpy_state(vae)
        started = time.monotonic()
        self._validate(hist[:VALIDATION_BATCH], targets[:VALIDATION_BATCH])
        self.params = prev
        return (time.monotonic() - started) * -(-hist.shape[0] // VALIDATION_BATCH)

    def _validate(self, hist: sp.csr_matrix, targets: list) -> dict[str, float]:
        ev = RankingEvaluator(hist.shape[1], (10, 20))
        for lo in range(0, hist.shape[0], VALIDATION_BATCH):
            h = hist[lo:lo + VALIDATION_BATCH]
            scores = self.decode(self.encode(self._preprocess(h.toarray()))).astype(np.float64)
            mask_seen(scores, np.split(h.indices, h.indptr[1:-1]))
            ev.add(scores, targets[lo:lo + VALIDATION_BATCH])
        return {f"val_{k}": v for k, v in ev.result().items() if k != "users"}

    # -- artifact: numpy state_dict + the config in the manifest ---------------------------------
    def _save_weights(self, folder: Path) -> None:
        np.savez(folder / "vae.npz", **self.params)
        (folder / "vae_history.json").write_text(json.dumps(self.history, indent=1))

    def _load_weights(self, folder: Path) -> None:
        with np.load(folder / "vae.npz") as z:
            self.params = {k: z[k] for k in z.files}
        if self.params["decoder.fc0.weight"].shape[1] != self.config.latent:
            raise ValueError(f"{folder}: weights do not match the manifest's latent={self.config.latent}")
        hist = folder / "vae_history.json"
        self.history = json.loads(hist.read_text()) if hist.exists() else []


def _numpy_state(module) -> dict[str, np.ndarray]:
    """A torch module's state_dict as float32 numpy arrays (keys as torch names them)."""
    return {k: v.detach().cpu().numpy().astype(np.float32).copy() for k, v in module.state_dict().items()}


def tune_epochs(engine: VAEEngine, ds, start_epoch: int = 0):
    """Ray Tune hook (trainers/tune.py): train in place, yield (epoch, validation metrics)."""
    for row in engine.train_epochs(ds.train, ds.interactions.select([VAL, VAL_FOLD_IN]), start_epoch):
        if "val_recall@20" in row:
            yield row["epoch"], {k: v for k, v in row.items() if k not in ("best", "stopped")}
