"""Shopping simulator: user model fitted on logs (user_model), vectorized core (shopping), Gymnasium
env + registration (env), candidate features shared with serving (features)."""
from envs.env import ShoppingEnv, register_gym, register_rllib  # noqa: F401
from envs.shopping import ENV_ID, RLLIB_ENV  # noqa: F401

register_gym()
