"""RLlib (new API stack) module: the Transformer Q-network inside DQN.

Subclasses RLlib's DefaultDQNTorchRLModule and replaces only the network: `setup()` builds the plain
torch `QNetwork` (models/dqn/network.py) as the encoder with an identity head, and
`_qf_forward_helper` maps the dict observation to Q-values [B, K]. Target networks (a copy of the
encoder), double-Q targets, epsilon-greedy exploration and replay come from RLlib unchanged.

Import this only in RL processes (it imports Ray); serving loads models/dqn/policy.py instead.
"""
from __future__ import annotations

import os

os.environ.setdefault("RLLIB_TEST_NO_TF_IMPORT", "1")  # keep TensorFlow out of RL processes

import torch  # noqa: E402

# One intra-op thread per RL process (scale with more env runners / learners instead): the network's
# ops are tiny, and on a shared CPU two OpenMP threads spin-waiting for each other made every layer
# ~40x slower here (10 ms per small matmul).
torch.set_num_threads(int(os.environ.get("RECSYS_TORCH_THREADS", "1")))
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS  # noqa: E402
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule  # noqa: E402
from ray.rllib.core.columns import Columns  # noqa: E402
from ray.rllib.utils.schedules.scheduler import Scheduler  # noqa: E402

from models.dqn.network import QNetwork, QNetworkConfig  # noqa: E402

NETWORK_KEYS = ("n_features", "history_len", "d_model", "n_heads", "n_layers", "item_buckets", "dropout", "prior",
                "candidate_ids")


def network_config(model_config: dict, observation_space=None) -> QNetworkConfig:
    """QNetworkConfig from an RLlib model_config (+ the observation space for the shapes)."""
    values = {k: model_config[k] for k in NETWORK_KEYS if k in model_config}
    if observation_space is not None:
        values["history_len"] = int(observation_space["hist_items"].shape[0])
        values["n_features"] = int(observation_space["cand_feats"].shape[-1])
        values["prior"] = "cand_prior" in observation_space.spaces  # the env supplies the myopic prior
    return QNetworkConfig(**values)


class TransformerDQNModule(DefaultDQNTorchRLModule):
    def setup(self):
        mc = self.model_config
        self.uses_dueling = False          # each candidate is scored on its own; no shared value stream
        self.uses_double_q = bool(mc.get("double_q", True))
        self.num_atoms = 1
        self.epsilon_schedule = Scheduler(fixed_value_or_schedule=mc.get("epsilon", [(0, 1.0), (10000, 0.05)]),
                                          framework="torch")
        self.encoder = QNetwork(network_config(mc, self.observation_space))
        self.af = torch.nn.Identity()

    def _qf_forward_helper(self, batch, encoder, head):
        obs = batch[Columns.OBS]
        q = encoder(obs["hist_items"], obs["hist_events"], obs["cand_feats"], obs["cand_items"],
                    obs.get("cand_prior"))                                                   # [B, K]
        return {QF_PREDS: head(q)}
