"""Serving a SASRec artifact through the LiteRT interpreter (`ai_edge_litert`), without TensorFlow.

The artifact folder written by `SasrecEngine.save` holds `model.tflite` (items, events [B, max_len]
int32 -> scores [B, n_items]), `tflite.json` (its input contract) and the catalog. `SasrecTFLite`
reads only those: numpy, pandas (catalog) and the interpreter. For catalogs at or above the config's
`ann.min_items` the folder also holds `hidden.tflite` (-> the final hidden state [B, D]) and
`item_vectors.npy`, and top-k goes through the FAISS index over them (models/ann.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from models.ann import INDEX_FILE, ItemIndex, ann_config
from models.sasrec.inputs import pad_histories
from recdata.dataset import Catalog
from recdata.schema import HistoryBatch
from recdata.metrics import NEG_INF, mask_seen, top_k


LENGTH_STEP = 16  # histories are padded to a multiple of this (few interpreter re-allocations)


class SasrecTFLite:
    """Scores histories with the exported TFLite model: `score(batch) -> [B, n_items]`,
    `recommend(batch, k)` -> top-k dense item indices (seen filtered), like the Keras engine."""

    name = "sasrec"

    def __init__(self, folder: str | Path, num_threads: int = 1):
        folder = Path(folder)
        model, meta = folder / "model.tflite", folder / "tflite.json"
        if not model.exists() or not meta.exists():
            raise FileNotFoundError(f"{folder} has no model.tflite/tflite.json; save a SasrecEngine there first")
        self.meta = json.loads(meta.read_text())
        self.max_len, self.n_items = int(self.meta["max_len"]), int(self.meta["n_items"])
        # Artifacts exported before lengths became dynamic take exactly max_len.
        self.dynamic_length = bool(self.meta.get("dynamic_length", False))
        self.catalog = Catalog.load(folder / "catalog") if (folder / "catalog").exists() else None
        self.scorer = _Runner(model, num_threads)
        self.ann = ann_config(self.meta.get("config", {}).get("ann"))
        self.uses_ann = self.n_items >= self.ann.min_items and (folder / "hidden.tflite").exists()
        self.hidden = _Runner(folder / "hidden.tflite", num_threads) if self.uses_ann else None
        self._folder, self._index = folder, None

    def score(self, batch: HistoryBatch) -> np.ndarray:
        return self.scorer.run(*self._padded(batch))                         # [B, N]

    def query_vectors(self, batch: HistoryBatch) -> np.ndarray:
        return self.hidden.run(*self._padded(batch))                         # [B, D]

    def retrieval_index(self) -> ItemIndex:
        if self._index is None:  # the index saved with the artifact, else built from the vectors
            vectors = np.load(self._folder / "item_vectors.npy")
            self._index = ItemIndex(vectors, None, self.ann, saved=self._folder / INDEX_FILE)
        return self._index

    def retrieve(self, batch: HistoryBatch, k: int, exclude=None, allowed=None):
        """As `Engine.retrieve`: top-k through the item index, filters applied."""
        return self.retrieval_index().search(self.query_vectors(batch), k, exclude, allowed)

    def _padded(self, batch: HistoryBatch) -> tuple[np.ndarray, np.ndarray]:
        width = self.max_len
        if self.dynamic_length:  # the batch's longest history, rounded up to few distinct shapes
            longest = max((min(len(s), self.max_len) for s in batch.items), default=1)
            width = min(self.max_len, max(LENGTH_STEP, -(-longest // LENGTH_STEP) * LENGTH_STEP))
        return pad_histories(batch.items, batch.events, width)

    def recommend(self, batch: HistoryBatch, k: int = 10, exclude_seen: bool = True):
        if self.uses_ann:
            return self.retrieve(batch, k, list(batch.items) if exclude_seen else None)
        scores = self.score(batch).astype(np.float64)
        if exclude_seen:
            mask_seen(scores, batch.items)
        idx = top_k(scores, k)
        vals = np.where(idx >= 0, np.take_along_axis(scores, np.maximum(idx, 0), axis=1), NEG_INF)
        return idx, vals


class _Runner:
    """One TFLite model taking (items, events) [B, T] int32, resized only when the shape changes."""

    def __init__(self, path: Path, num_threads: int):
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        inputs = {d["name"]: d["index"] for d in self.interpreter.get_input_details()}
        self.order = [self._input_index(inputs, n, path) for n in ("items", "events")]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.shape = None

    @staticmethod
    def _input_index(inputs: dict, name: str, path: Path) -> int:
        for key, idx in inputs.items():  # converter names look like "serving_default_items:0"
            if name in key:
                return idx
        raise KeyError(f"{path.name} has no input named like {name!r}: {list(inputs)}")

    def run(self, items: np.ndarray, events: np.ndarray) -> np.ndarray:
        if items.shape != self.shape:
            for idx in self.order:
                self.interpreter.resize_tensor_input(idx, list(items.shape))
            self.interpreter.allocate_tensors()
            self.shape = items.shape
        self.interpreter.set_tensor(self.order[0], items)
        self.interpreter.set_tensor(self.order[1], events)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()
