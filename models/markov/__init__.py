from models.markov.model import MarkovConfig, MarkovEngine

__all__ = ["MarkovConfig", "MarkovEngine"]
