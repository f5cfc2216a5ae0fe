from models.vae.model import VAEConfig, VAEEngine, interaction_matrix, to_cornac, tune_epochs

__all__ = ["VAEConfig", "VAEEngine", "interaction_matrix", "to_cornac", "tune_epochs"]
