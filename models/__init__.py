"""One folder per engine; `models.base` holds the interface they share."""
from models.base import Engine, get_engine_class, load_config

__all__ = ["Engine", "get_engine_class", "load_config"]
