"""The plain-torch decision policy artifact (what serving loads)."""
import numpy as np
import pytest
import torch

from models.dqn.features import CANDIDATE_FEATURES
from models.dqn.network import QNetwork, QNetworkConfig
from models.dqn.policy import DecisionPolicy
from recdata.dataset import Catalog


@pytest.fixture
def policy():
    torch.manual_seed(0)
    cat = Catalog(np.array(["u1"]), np.array([101, 204, 305, 406, 507]))
    return DecisionPolicy(QNetwork(QNetworkConfig(n_features=len(CANDIDATE_FEATURES), history_len=6, d_model=16)),
                          cat, CANDIDATE_FEATURES)


def test_save_load_round_trip_without_ray(policy, tmp_path):
    folder = policy.save(tmp_path / "dqn")
    back = DecisionPolicy.load(folder)
    assert back.feature_names == CANDIDATE_FEATURES and back.history_len == 6
    np.testing.assert_array_equal(back.catalog.item_ids, policy.catalog.item_ids)
    rng = np.random.default_rng(0)
    hi = np.array([[-1, -1, 0, 1, 2, 3], [-1, -1, -1, -1, -1, -1]])
    he = np.zeros((2, 6), np.int8)
    cf = rng.random((2, 4, len(CANDIDATE_FEATURES))).astype(np.float32)
    ci = np.array([[0, 1, 4, 3], [2, 3, 4, -1]])
    q1, q2 = policy.q_values(hi, he, cf, ci), back.q_values(hi, he, cf, ci)
    assert q1.shape == (2, 4) and np.isfinite(q1).all()
    np.testing.assert_allclose(q1, q2, rtol=1e-6)


def test_policy_module_does_not_import_ray():
    import ast
    import inspect

    import models.dqn.network as net
    import models.dqn.policy as pol

    for mod in (pol, net):
        tree = ast.parse(inspect.getsource(mod))
        names = [n.names[0].name if isinstance(n, ast.Import) else n.module for n in ast.walk(tree)
                 if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not any(str(n).startswith("ray") for n in names)


def test_history_is_fitted_and_rank_maps_raw_ids(policy):
    feats = np.random.default_rng(1).random((3, len(CANDIDATE_FEATURES))).astype(np.float32)
    order, q = policy.rank([101, 204, 999], [0, 2, 0], [305, 406, 12345], feats, raw_ids=True)
    assert sorted(order.tolist()) == [0, 1, 2] and q[order[0]] == q.max()
    # a longer history than history_len keeps the last items
    long = np.arange(10).reshape(1, -1) % 5
    q_long = policy.q_values(long, np.zeros_like(long), feats[None], np.array([[0, 1, 2]]))
    q_last = policy.q_values(long[:, -6:], np.zeros((1, 6)), feats[None], np.array([[0, 1, 2]]))
    np.testing.assert_allclose(q_long, q_last, rtol=1e-6)
    with pytest.raises(ValueError, match="cand_feats must be"):
        policy.q_values(long, np.zeros_like(long), feats[None, :, :3], np.array([[0, 1, 2]]))


def test_network_shape_does_not_depend_on_the_catalog():
    net = QNetwork(QNetworkConfig(d_model=16, history_len=4))
    n_params = sum(p.numel() for p in net.parameters())
    for n_items in (10, 10_000_000):
        hi = torch.randint(0, n_items, (2, 4))
        q = net(hi, torch.zeros(2, 4, dtype=torch.long), torch.rand(2, 7, 8), torch.randint(0, n_items, (2, 7)))
        assert q.shape == (2, 7)
    assert sum(p.numel() for p in net.parameters()) == n_params
