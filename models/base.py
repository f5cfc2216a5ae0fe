"""The engine interface shared by all four engines (after cornac's `Recommender` and RecBole's
`full_sort_predict`).

An engine implements four things:
    fit(train, val=None) -> self        learn from encoded interactions
    score(batch) -> [B, n_items]        a score per catalog item for each history in the batch
    _save_weights(dir) / _load_weights(dir)   its own tensors, in a framework-native format

The base class builds the rest once: `recommend` (top-k, seen-item filtering, business filters),
candidate retrieval over item vectors for engines whose scores are inner products (`item_vectors`,
`query_vectors`: exact top-k on small catalogs, a FAISS HNSW index above `config.ann.min_items`,
models/ann.py), `save`/`load` of a self-describing artifact (manifest.json with the engine name and config, the
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

from models.ann import INDEX_FILE, ItemIndex
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
        self._index: ItemIndex | None = None        # built on first use; drop_index() after new weights
        self._index_file: Path | None = None        # a saved index in the loaded artifact, if any

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

    def item_vectors(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(item vectors [N, d], bias [N] or None) such that score(batch) = query_vectors(batch) @ V.T + bias;
        None (the default) for engines whose scores are not such an inner product."""
        return None

    def query_vectors(self, batch: HistoryBatch) -> np.ndarray:
        """[B, d] query side of `item_vectors` (engines that implement item_vectors implement this)."""
        raise NotImplementedError(f"{self.name}: no query vectors; its scores are not an inner product")

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

    @property
    def uses_ann(self) -> bool:
        """True when top-k goes through the HNSW index: the engine has item vectors, a config with an
        `ann` section, and a catalog of at least `ann.min_items` items."""
        ann = getattr(self.config, "ann", None)
        return (ann is not None and type(self).item_vectors is not Engine.item_vectors
                and self.n_items >= ann.min_items)

    def retrieval_index(self) -> ItemIndex:
        """The item index (exact or HNSW by catalog size), built once: read from the artifact when it
        was saved there, else built from `item_vectors()`."""
        if self._index is None:
            vectors = self.item_vectors()
            if vectors is None:
                raise NotImplementedError(f"{self.name}: no item vectors to index")
            self._index = ItemIndex(*vectors, config=self.config.ann, saved=self._index_file)
        return self._index

    def drop_index(self) -> None:
        """Forget the item index (the weights changed): the next retrieval rebuilds it."""
        self._index = None

    def retrieve(self, batch: HistoryBatch, k: int, exclude: list[np.ndarray] | None = None,
                 allowed: np.ndarray | list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k through the item index: (indices [B, k], scores [B, k]), -1 / -inf pads. `exclude`: per-row
        items to leave out; `allowed`: a bool [n_items] mask, or one per row (see ItemIndex.search)."""
        return self.retrieval_index().search(self.query_vectors(batch), k, exclude, allowed)

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
        `exclude`: per-row extra items to leave out. Above `config.ann.min_items` items, engines with item
        vectors answer through the ANN index (models/ann.py), with the same filtering."""
        if self.uses_ann:
            skip = [np.concatenate([np.asarray(s, np.int64) if exclude_seen else np.empty(0, np.int64),
                                    np.asarray(exclude[b], np.int64) if exclude is not None else np.empty(0, np.int64)])
                    for b, s in enumerate(batch.items)]
            return self.retrieve(batch, k, skip, allowed)
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
        if self.uses_ann and self.config.ann.save_index:  # a replica reads it instead of rebuilding
            self.retrieval_index().save(folder / INDEX_FILE)
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
        engine._index_file = folder / INDEX_FILE
        return engine


# Engine name -> module that defines it. Imported on first use so that a process serving one engine
# loads only that engine's framework (TensorFlow for SASRec, torch for the others).
ENGINE_MODULES = {
    "popularity": "models.popularity",
    "markov": "models.markov",
    "sasrec": "models.sasrec.engine",
    "vae": "models.vae",
    "ease": "models.ease",
    "content": "models.content",
}


def get_engine_class(name: str) -> type[Engine]:
    if name not in _REGISTRY and name in ENGINE_MODULES:
        importlib.import_module(ENGINE_MODULES[name])
    if name not in _REGISTRY:
        raise KeyError(f"unknown engine {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]
