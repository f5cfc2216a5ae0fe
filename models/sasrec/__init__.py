"""The sequence engine: SASRec in Keras 3, exported to TFLite (see `model.py`, `engine.py`, `lite.py`)."""
from models.sasrec.config import SasrecConfig
from models.sasrec.engine import SasrecEngine
from models.sasrec.tune import tune_epochs

__all__ = ["SasrecConfig", "SasrecEngine", "tune_epochs"]
