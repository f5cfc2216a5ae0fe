"""Serving a SASRec artifact through the LiteRT interpreter (`ai_edge_litert`), without TensorFlow.

The artifact folder written by `SasrecEngine.save` holds `model.tflite` (items, events [B, max_len]
int32 -> scores [B, n_items]), `tflite.json` (its input contract) and the catalog. `SasrecTFLite`
reads only those: numpy, pandas (catalog) and the interpreter.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

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
        self.interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
        self._inputs = {d["name"]: d["index"] for d in self.interpreter.get_input_details()}
        self._order = [self._input_index(n) for n in ("items", "events")]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._batch = None

    def _input_index(self, name: str) -> int:
        for key, idx in self._inputs.items():  # converter names look like "serving_default_items:0"
            if name in key:
                return idx
        raise KeyError(f"model.tflite has no input named like {name!r}: {list(self._inputs)}")

    def score(self, batch: HistoryBatch) -> np.ndarray:
        width = self.max_len
        if self.dynamic_length:  # the batch's longest history, rounded up to few distinct shapes
            longest = max((min(len(s), self.max_len) for s in batch.items), default=1)
            width = min(self.max_len, max(LENGTH_STEP, -(-longest // LENGTH_STEP) * LENGTH_STEP))
        items, events = pad_histories(batch.items, batch.events, width)
        shape = (len(items), width)
        if shape != self._batch:  # resize only when the shape changes
            for idx in self._order:
                self.interpreter.resize_tensor_input(idx, list(shape))
            self.interpreter.allocate_tensors()
            self._batch = shape
        self.interpreter.set_tensor(self._order[0], items)
        self.interpreter.set_tensor(self._order[1], events)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output).copy()  # [B, N]

    def recommend(self, batch: HistoryBatch, k: int = 10, exclude_seen: bool = True):
        scores = self.score(batch).astype(np.float64)
        if exclude_seen:
            mask_seen(scores, batch.items)
        idx = top_k(scores, k)
        vals = np.where(idx >= 0, np.take_along_axis(scores, np.maximum(idx, 0), axis=1), NEG_INF)
        return idx, vals
