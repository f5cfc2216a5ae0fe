"""Decision engine: Transformer-DQN (plain-torch network + RLlib module + serving artifact)."""
