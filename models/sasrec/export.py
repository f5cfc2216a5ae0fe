"""SASRec to TFLite (LiteRT): the scoring function with dynamic batch and length, for the serving
replicas (models/sasrec/lite.py runs it with no TensorFlow in the process)."""
from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

TFLITE_FILE = "model.tflite"
HIDDEN_FILE = "hidden.tflite"          # items, events -> the final hidden state [B, D]
ITEM_VECTORS_FILE = "item_vectors.npy"  # [N, D] item embeddings (padding row dropped)


def export_tflite(net, config, n_items: int, path: str | Path) -> Path:
    """Convert the scoring function (items, events [B, T] int32, T <= max_len -> scores [B, N]) to a
    TFLite flatbuffer. Batch and length are both dynamic (resize the interpreter's inputs): positions
    count from the newest item, so a short history scored at its own length T equals the same
    history left-padded to max_len, at a fraction of the cost."""
    # Keras' own SavedModel export, then the SavedModel converter (which freezes the weights).
    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint(
        "serving_default", lambda items, events: net.last_scores(items, events),
        input_signature=[tf.TensorSpec([None, None], tf.int32, "items"),
                         tf.TensorSpec([None, None], tf.int32, "events")])
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
    path = Path(path)
    path.write_bytes(flatbuffer)
    meta = {"inputs": ["items", "events"], "max_len": config.max_len, "n_items": n_items,
            "id_shift": 1, "dynamic_length": True, "config": dataclasses.asdict(config)}
    (path.parent / "tflite.json").write_text(json.dumps(meta, indent=1))
    return path


def export_retrieval(net, path: str | Path) -> Path:
    """For catalogs served through the ANN index: the query side (items, events [B, T] -> the final
    hidden state h [B, D]) as a second TFLite model, and the item side (the tied embedding table [N, D])
    as .npy beside it, so scores = h @ item_vectors.T and LiteRT needs no [B, N] output."""
    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint(
        "serving_default", lambda items, events: net(items, events, training=False)[:, -1, :],
        input_signature=[tf.TensorSpec([None, None], tf.int32, "items"),
                         tf.TensorSpec([None, None], tf.int32, "events")])
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
    path = Path(path)
    path.write_bytes(flatbuffer)
    np.save(path.parent / ITEM_VECTORS_FILE, net.item_emb.embeddings.numpy()[1:].astype(np.float32))
    return path
