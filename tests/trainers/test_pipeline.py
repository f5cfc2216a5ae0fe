"""The pipeline as one Ray job: stages run, register, and a rerun skips what did not change."""
import json

import pytest
import yaml

from trainers.pipeline import _with_upstream, load_pipeline_config, main

pytestmark = pytest.mark.ray_session  # starts its own Ray in-process: run apart (tests/run_suite.sh)


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    from recdata.synthetic import SyntheticConfig, write_csv

    path = tmp_path_factory.mktemp("data") / "events.csv"
    write_csv(SyntheticConfig(n_users=200, n_items=500, seed=5), path)
    return path


def test_upstream_stages_are_added_and_unknown_ones_fail():
    assert [s.name for s in _with_upstream(["vae"])] == ["prepare", "vae"]
    with pytest.raises(ValueError, match="unknown stage"):
        _with_upstream(["nope"])


def test_config_rejects_unknown_sections(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("stages: [prepare]\nsasrek: {}\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sasrek'\]"):
        load_pipeline_config(str(p))


def test_rerun_skips_unchanged_stages_and_reruns_changed_ones(events, recsys_home, tmp_path, capsys):
    import ray

    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"stages": ["popularity", "vae"],
                                   "vae": {"epochs": 2, "eval_every": 1, "hidden": [16], "latent": 8}}))
    args = ["--format", "rees46", "--path", str(events), "--config", str(cfg)]
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert main(args) == 0
        first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert set(first) == {"prepare", "popularity", "vae"}
        assert first["vae"]["artifact"] == "models:/discovery@champion" and first["prepare"]["bad_rows"] == 0
        assert main(args) == 0
        out = capsys.readouterr().out
        assert out.count("unchanged inputs, skipped") == 3
        cfg.write_text(yaml.safe_dump({"stages": ["popularity", "vae"], "popularity": {"use_weights": True},
                                       "vae": {"epochs": 2, "eval_every": 1, "hidden": [16], "latent": 8}}))
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "popularity unchanged" not in out and "vae        unchanged inputs, skipped" in out
    finally:
        ray.shutdown()
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{recsys_home / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["pipeline"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 3
    first_children = runs[runs["tags.mlflow.parentRunId"] == parents.sort_values("start_time")["run_id"].iloc[0]]
    assert set(first_children["tags.mlflow.runName"]) == {"prepare", "popularity", "vae"}


def test_vae_and_ease_compete_for_discovery_and_the_better_one_serves(events, recsys_home, tmp_path, capsys):
    import ray

    from reccore import tracking

    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"stages": ["vae", "ease"], "ease": {"lambdas": [30.0, 300.0]},
                                   "vae": {"epochs": 2, "eval_every": 1, "hidden": [16], "latent": 8},
                                   "evaluation": {"max_users": 60}}))
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert main(["--format", "rees46", "--path", str(events), "--config", str(cfg)]) == 0
    finally:
        ray.shutdown()
    lines = capsys.readouterr().out.strip().splitlines()
    out = json.loads(lines[-1])
    # `ease` waits for `vae` (same registered model), so the gate compared them in that order.
    waves = [ln.split("submitted: ")[1] for ln in lines if ln.startswith("[pipeline] submitted")]
    assert waves == ["prepare (1 CPU)", "vae (1 CPU)", "ease (1 CPU)"]
    vae, ease = out["vae"], out["ease"]
    # The pipeline's evaluation section reaches every stage: the same 60 sampled users, labelled with the total.
    assert vae["val_users_total"] == ease["val_users_total"] > 60 and vae["test_users_total"] > 60
    assert (vae["version"], vae["alias"]) == ("1", "champion")   # no champion yet
    winner = "ease" if ease["val_ndcg@10"] > vae["val_ndcg@10"] else "vae"
    assert ease["alias"] == ("champion" if winner == "ease" else "challenger")
    assert tracking.model_version("discovery", "champion") == out[winner]["version"]
