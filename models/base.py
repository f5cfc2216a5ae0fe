"""The engine interface shared by all four engines (after cornac's `Recommender` and RecBole's
`full_sort_predict`).

An engine implements four things:
    fit(train, val=None) -> self        learn from encoded interactions
    score(batch) -> [B, n_items]        a score per catalog item for each history in the batch
    _save_weights(dir) / _load_weights(dir)   its own tensors, in a framework-native format

The base class builds the rest once: `recommend` (top-k, seen-item filtering, business filters),
`save`/`load` of a self-describing artifact (manifest.json with the engine name and config, the
catalog as Parquet, the weights) -- never a pickled object, so an artifact outlives code changes
and a Serve replica loads it without the training stack.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import json
import time
from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from reccore.config import config_from_dict, load_config
from recdata.dataset import Catalog, Interactions
from recdata.filters import allowed_mask
from recdata.metrics import NEG_INF, mask_seen, top_k
from recdata.schema import HistoryBatch

__all__ = ["ENGINE_MODULES", "Engine", "config_from_dict", "get_engine_class", "load_config"]

ARTIFACT_VERSION = 1
_REGISTRY: dict[str, type["Engine"]] = {}


class Engine(abc.ABC):
    """Base class: subclasses set `name` and `config_class` and implement fit/score/weights IO."""

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not getattr(cls, "__abstractmethods__", None) and hasattr(cls, "name"):
            _REGISTRY[cls.name] = cls

    def __init__(self, config=None, catalog: Catalog | None = None):
        self.config = config if config is not None else self.config_class()
        self.catalog = catalog
        self.fit_seconds: float | None = None

    # -- what each engine implements ------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, train: Interactions, val: Interactions | None = None) -> Self: ...

    @abc.abstractmethod
    def score(self, batch: HistoryBatch) -> np.ndarray:
        """[B, n_items] float scores, all finite; higher is better. Seen items are filtered by the
        caller, on its own copy: the array returned may be a read-only view."""

    @abc.abstractmethod
    def _save_weights(self, folder: Path) -> None: ...

    @abc.abstractmethod
    def _load_weights(self, folder: Path) -> None: ...

    # -- built once here ------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        if self.catalog is None:
            raise RuntimeError(f"{self.name}: no catalog; pass catalog= or load a saved artifact")
        return self.catalog.n_items

    def allowed(self, category: str | None = None, min_price: float | None = None,
                max_price: float | None = None) -> np.ndarray | None:
        """Boolean [n_items] mask of the business filters for `recommend(allowed=...)`; None without a
        filter. The same function (recdata.filters) filters every engine and the serving path."""
        return allowed_mask(self.catalog, category, min_price, max_price)

    def recommend(
        self,
        batch: HistoryBatch,
        k: int = 10,
        exclude_seen: bool = True,
        allowed: np.ndarray | None = None,
        exclude: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k dense item indices and scores per history ([B, k], -1 where fewer qualify).
        `allowed`: boolean [n_items] mask from business filters (category, price...);
        `exclude`: per-row extra items to leave out."""
        scores = np.array(self.score(batch), dtype=np.float64)
        if exclude_seen:
            mask_seen(scores, batch.items)
        if exclude is not None:
            mask_seen(scores, exclude)
        if allowed is not None:
            scores[:, ~np.asarray(allowed, bool)] = NEG_INF
        idx = top_k(scores, k)
        vals = np.where(idx >= 0, np.take_along_axis(scores, np.maximum(idx, 0), axis=1), NEG_INF)
        return idx, vals

    def timed_fit(self, train: Interactions, val: Interactions | None = None) -> Self:
        t0 = time.perf_counter()
        self.fit(train, val)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def checkpoint(self, folder: str | Path) -> Path:
        """A snapshot a restarted job continues from (Tune trials, Ray Train restarts). By default the
        artifact itself; engines with training state of their own (optimizer, RNG) override it so
        `load(folder)` then `fit(..., warm_start=True)` resumes exactly."""
        return self.save(folder)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {
            "engine": self.name,
            "artifact_version": ARTIFACT_VERSION,
            "config": dataclasses.asdict(self.config),
            "n_items": self.n_items,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        self.catalog.save(folder / "catalog")
        self._save_weights(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "Engine":
        """Load any saved engine; called on a subclass it also checks the artifact's engine name."""
        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{folder} is not an engine artifact (no manifest.json)")
        manifest = json.loads(manifest_path.read_text())
        engine_cls = get_engine_class(manifest["engine"])
        if cls is not Engine and not issubclass(engine_cls, cls):
            raise TypeError(f"{folder} holds a {manifest['engine']!r} engine, not {cls.name!r}")
        config = config_from_dict(engine_cls.config_class, manifest["config"], str(manifest_path))
        engine = engine_cls(config, Catalog.load(folder / "catalog"))
        engine._load_weights(folder)
        return engine


# Engine name -> module that defines it. Imported on first use so that a process serving one engine
# loads only that engine's framework (TensorFlow for SASRec, torch for the others).
ENGINE_MODULES = {
    "popularity": "models.popularity",
    "markov": "models.markov",
    "sasrec": "models.sasrec.engine",
    "vae": "models.vae",
    "content": "models.content",
}


def get_engine_class(name: str) -> type[Engine]:
    if name not in _REGISTRY and name in ENGINE_MODULES:
        importlib.import_module(ENGINE_MODULES[name])
    if name not in _REGISTRY:
        raise KeyError(f"unknown engine {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]
