"""The sequence engine: SASRec in Keras 3, exported to TFLite (see `model.py`, `engine.py`, `lite.py`).

Attributes load lazily so that `models.sasrec.lite` (the serving path) never imports TensorFlow.
"""
from models.sasrec.config import SasrecConfig

__all__ = ["SasrecConfig", "SasrecEngine", "tune_epochs"]


def __getattr__(name: str):
    if name == "SasrecEngine":
        from models.sasrec.engine import SasrecEngine

        return SasrecEngine
    if name == "tune_epochs":
        from models.sasrec.tune import tune_epochs

        return tune_epochs
    raise AttributeError(f"module 'models.sasrec' has no attribute {name!r}")
