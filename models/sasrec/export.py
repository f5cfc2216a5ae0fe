"""SASRec to TFLite (LiteRT): the scoring function with dynamic batch and length, for the serving
replicas (models/sasrec/lite.py runs it with no TensorFlow in the process)."""
from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

TFLITE_FILE = "model.tflite"


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
