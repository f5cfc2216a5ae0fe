"""Shopping simulator: user model fitted on logs (user_model), vectorized core (shopping), Gymnasium
env and its registration (env), policy evaluation in the simulator (policies). The DQN's candidate
features live with the DQN (models/dqn/features.py).

Importing this package registers nothing: call `envs.env.register_gym()` before
`gymnasium.make("recsys/Shopping-v0", ...)` and `envs.env.register_rllib()` before naming the env in an
RLlib config."""
