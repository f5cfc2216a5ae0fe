"""Sweeps: config validation, and a real ASHA sweep on a two-node simulated Ray cluster."""
import json

import pytest
import yaml

from support import REPO
from trainers.tune import load_sweep, main

pytestmark = pytest.mark.ray_session  # starts its own Ray in-process: run apart (tests/run_suite.sh)


def test_shipped_sweep_files_are_valid():
    for name in ("sasrec", "vae"):
        sweep = load_sweep(REPO / "tune_configs" / f"{name}.yaml")
        assert sweep.engine == name and sweep.num_samples >= 8 and sweep.search_space


def test_unknown_keys_fail_with_the_valid_ones(tmp_path):
    base = yaml.safe_load((REPO / "tune_configs" / "vae.yaml").read_text())
    for bad, match in (({"num_sample": 3}, r"unknown key\(s\) \['num_sample'\]"),
                       ({"search_space": {"latnt": {"choice": [1]}}}, r"\['latnt'\] that are not fields of VAEConfig"),
                       ({"search_space": {"latent": {"normal": [1, 2]}}}, "must be one of"),
                       ({"scheduler": {"max_epochs": 3}}, r"unknown key\(s\) \['max_epochs'\]")):
        p = tmp_path / "s.yaml"
        p.write_text(yaml.safe_dump({**base, **bad}))
        with pytest.raises(ValueError, match=match):
            load_sweep(p)


@pytest.fixture
def two_node_cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_sweep_on_two_nodes_registers_the_best(two_node_cluster, recsys_home, tmp_path, capsys):
    from recdata.synthetic import SyntheticConfig, write_csv

    data = tmp_path / "events.csv"
    write_csv(SyntheticConfig(n_users=300, n_items=500, seed=3), data)
    sweep = yaml.safe_load((REPO / "tune_configs" / "vae.yaml").read_text())
    sweep.update(data={"format": "rees46", "path": str(data)}, num_samples=1, max_concurrent_trials=2,
                 scheduler={"max_t": 4, "grace_period": 2, "reduction_factor": 2},
                 base={"epochs": 4, "eval_every": 2, "torch_threads": 1},
                 search_space={"latent": {"grid": [16, 32]}, "hidden": {"choice": [[32]]}})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    assert main(["vae", "--config", str(path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["trials"] == 2 and out["errors"] == 0
    assert len(out["nodes"]) == 2, f"both trials ran on {out['nodes']}"
    assert out["registered_version"] == "1"
    assert 0 <= out["best_test"]["recall@20"] <= 1 and "recall@20" in out["popularity_test"]
    # --resume restores the experiment from its storage (Tuner.restore) instead of starting over
    assert main(["vae", "--config", str(path), "--resume"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["trials"] == 2 and again["best_config"] == out["best_config"]
    assert again["registered_version"] == "2"
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{recsys_home / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["tune-vae"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()].sort_values("start_time")
    children = runs[runs["tags.mlflow.parentRunId"] == parents["run_id"].iloc[0]]
    assert len(parents) == 2 and len(children) == 2  # the sweep and its resumption
    assert set(children["status"]) == {"FINISHED"}  # trials end their runs, even when stopped
