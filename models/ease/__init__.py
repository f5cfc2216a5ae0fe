from models.ease.model import EaseConfig, EaseEngine

__all__ = ["EaseConfig", "EaseEngine"]
