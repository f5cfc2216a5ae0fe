from models.vae.data import interaction_matrix, to_cornac
from models.vae.model import VAEConfig, VAEEngine, tune_epochs

__all__ = ["VAEConfig", "VAEEngine", "interaction_matrix", "to_cornac", "tune_epochs"]
