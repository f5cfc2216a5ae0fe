from models.popularity.model import PopularityConfig, PopularityEngine

__all__ = ["PopularityConfig", "PopularityEngine"]
