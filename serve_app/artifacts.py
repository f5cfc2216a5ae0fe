"""Engine artifacts for serving: resolve a URI to a local folder (MLflow registry or a folder), describe
it for /version, load it with the lightest runtime, and word a load failure so it says the fix."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from models.base import Engine
from reccore import tracking


class EngineUnavailable(RuntimeError):
    """The deployment cannot answer (artifact failed to load, or a fault drill says so)."""


def load_error(e: Exception, uri: str, role: str) -> str:
    msg = f"{type(e).__name__}: {e}"
    if str(uri).startswith("models:/") and "not found" in str(e):
        msg += (f" -- train and register it first (python -m trainers.train_<engine>), or set "
                f"args.engines.{role} (or args.decision) to an artifact folder")
    return msg


def registry_version(uri: str) -> str | None:
    """`models:/name@alias` -> the version the alias points at; `models:/name/3` -> "3"."""
    if not str(uri).startswith("models:/"):
        return None
    rest = str(uri)[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return tracking.model_version(name, alias)
    parts = rest.split("/")
    return parts[1] if len(parts) == 2 and parts[1].isdigit() else None


def load_artifact_folder(uri: str, tracking_uri: str | None = None) -> tuple[Path, dict]:
    """Resolve a URI to a local folder (downloading from MLflow) and describe it for /version."""
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    for attempt in range(4):  # a fresh sqlite store being created by a sibling replica: retry
        try:
            folder = tracking.resolve_artifact(uri)
            break
        except FileNotFoundError:
            raise
        except Exception as e:
            if attempt == 3 or not any(w in str(e) for w in ("sqlite", "alembic", "locked", "migration")):
                raise
            time.sleep(0.5 * (attempt + 1))
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    info = {
        "uri": str(uri),
        "engine": manifest.get("engine"),
        "registry_version": registry_version(uri),
        "saved_at": manifest.get("saved_at"),
        "artifact_version": manifest.get("artifact_version"),
    }
    return folder, info


def load_for_serving(folder: Path):
    """(scorer, runtime name) of an engine artifact. A SASRec artifact is served by its TFLite model
    through the LiteRT interpreter (no TensorFlow in the replica; ~3x faster than the tf.function on
    one sequence, and it runs a short history at its own length); every other engine loads as saved."""
    manifest_path = Path(folder) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if manifest.get("engine") == "sasrec" and (Path(folder) / "model.tflite").exists():
        # Lazy: the LiteRT interpreter loads only in a replica that serves a SASRec artifact.
        from models.sasrec.lite import SasrecTFLite

        return SasrecTFLite(folder), "tflite"
    return Engine.load(folder), "python"
