"""The real SASRec training job on tiny data: MLflow run, learning curve, registry alias, Ray Train."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from support import write_cyclic_log
from reccore import tracking
from trainers import train_sasrec

pytestmark = pytest.mark.ray_session  # starts its own Ray in-process: run apart (tests/run_suite.sh)


def write_log(folder: Path) -> Path:
    return write_cyclic_log(folder, users=40, items=25, seed=1, lengths=(5, 12), name="tiny.txt")


def tiny_yaml(folder: Path, **extra) -> Path:
    cfg = {"max_len": 8, "hidden": 16, "blocks": 1, "heads": 1, "batch": 16, "lr": 0.01, "epochs": 1,
           "jit_compile": True, **extra}
    path = folder / "tiny.yaml"
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in cfg.items()) + "\n")
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_training_job_logs_and_registers_champion(home, capsys):
    summary = train_sasrec.main(["--format", "sasrec", "--path", str(write_log(home)),
                                 "--config", str(tiny_yaml(home)), "--epochs", "2"])
    out = capsys.readouterr().out
    assert "epoch   1" in out and "registered models:/sasrec@champion" in out
    assert "[gate] sasrec v1 promoted to @champion: no champion yet" in out
    assert json.loads(out.strip().splitlines()[-1])["version"] == summary["version"] == "1"
    assert summary["epochs"] == 2 and 0 <= summary["test_ndcg@10"] <= 1

    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("sasrec", "champion").version) == "1"
    history = client.get_metric_history(summary["run_id"], "val_ndcg_at_10")
    assert [m.step for m in history] == [1, 2]
    assert "learning_curve.png" in [a.path for a in client.list_artifacts(summary["run_id"])]

    from models.sasrec import SasrecEngine
    from models.sasrec.lite import SasrecTFLite
    from recdata.evaluation import HistoryBatch

    folder = tracking.resolve_artifact("models:/sasrec@champion", home / "dl")
    engine, lite = SasrecEngine.load(folder), SasrecTFLite(folder)
    batch = HistoryBatch.of([[1, 2, 3], [7, 8]])
    np.testing.assert_array_equal(lite.recommend(batch, 5)[0], engine.recommend(batch, 5)[0])


def test_bad_config_fails_before_training(home):
    bad = home / "bad.yaml"
    bad.write_text("max_len: 8\nlosss: ce\n")
    with pytest.raises(ValueError, match="losss"):
        train_sasrec.main(["--format", "sasrec", "--path", str(write_log(home)), "--config", str(bad)])
    with pytest.raises(ValueError, match="loss='hinge'"):
        train_sasrec.main(["--format", "sasrec", "--path", str(write_log(home)), "--config", str(tiny_yaml(home)),
                           "--loss", "hinge"])


def test_without_config_the_settings_are_derived_and_explained(home, capsys):
    summary = train_sasrec.main(["--format", "sasrec", "--path", str(write_log(home)), "--epochs", "1",
                                 "--hidden", "16", "--register-as", ""])
    out = capsys.readouterr().out
    assert "no --config: settings derived from the training data" in out
    assert "max_len 20: 99% of training histories" in out and "loss ce" in out and "dropout 0.5" in out
    assert "hidden=16" in out and summary["epochs"] == 1   # flags still override single fields


def loss_curve(run_id: str) -> list[tuple[int, float]]:
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    return [(m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run_id, "loss")]


def test_in_process_run_resumes_from_its_epoch_checkpoint(home, capsys):
    """1 epoch with --checkpoint-dir, then --resume-from it to 3 == 3 epochs in one run."""
    log, cfg, ckpt = write_log(home), str(tiny_yaml(home, ema_decay=0.9)), home / "ckpt"
    common = ["--format", "sasrec", "--path", str(log), "--config", cfg, "--register-as", ""]
    straight = train_sasrec.main([*common, "--epochs", "3"])
    train_sasrec.main([*common, "--epochs", "1", "--checkpoint-dir", str(ckpt)])
    resumed = train_sasrec.main([*common, "--epochs", "3", "--resume-from", str(ckpt)])
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert resumed["epochs"] == 3
    steps, losses = zip(*loss_curve(resumed["run_id"]))
    assert steps == (1, 2, 3)
    np.testing.assert_allclose(losses, [v for _, v in loss_curve(straight["run_id"])], rtol=1e-5)
    assert resumed["test_ndcg@10"] == pytest.approx(straight["test_ndcg@10"], abs=1e-6)
    with pytest.raises(ValueError, match="--checkpoint-dir is for in-process runs"):
        train_sasrec.main([*common, "--num-workers", "1", "--checkpoint-dir", str(ckpt)])
    (home / "other").mkdir()
    other = write_cyclic_log(home / "other", users=40, items=30, seed=2, lengths=(5, 12), name="other.txt")
    with pytest.raises(ValueError, match="another item catalog"):
        train_sasrec.main(["--format", "sasrec", "--path", str(other), "--config", cfg,
                           "--register-as", "", "--resume-from", str(ckpt)])


def test_ray_train_restarts_a_failed_worker_from_its_last_epoch(home, capfd, monkeypatch):
    """The real TensorflowTrainer, one worker: it fails at epoch 2 (the fault drill), Ray Train restarts it
    from epoch 1's checkpoint, and the run ends as an uninterrupted in-process run does."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    log, cfg = write_log(home), str(tiny_yaml(home, jit_compile=False, epochs=3))
    straight = train_sasrec.main(["--format", "sasrec", "--path", str(log), "--config", cfg, "--register-as", ""])
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # AF_UNIX socket paths must stay < 108 bytes
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=ray_tmp,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                                       "RAY_AUTH_MODE": "disabled", train_sasrec.DRILL_FAIL_EPOCH: "2"}})
    try:
        summary = train_sasrec.main(["--format", "sasrec", "--path", str(log), "--config", cfg, "--num-workers", "1",
                                     "--cpus-per-worker", "1", "--max-failures", "1", "--register-as", "sasrec-dist"])
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    out = capfd.readouterr()
    assert "fault drill" in out.out + out.err and "resuming after epoch 1" in out.out + out.err
    assert summary["epochs"] == 3 and summary["version"] == "1"
    steps, losses = zip(*loss_curve(summary["run_id"]))
    assert steps == (1, 2, 3)  # the worker's history: epoch 2 once, after the restart
    np.testing.assert_allclose(losses, [v for _, v in loss_curve(straight["run_id"])], rtol=1e-4)
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    assert str(mlflow.MlflowClient().get_model_version_by_alias("sasrec-dist", "champion").version) == "1"


def test_two_workers_on_two_nodes_train_in_sync_on_their_own_shards(home, monkeypatch):
    """Ray Train on a 2-node `ray.cluster_utils.Cluster` (1 CPU each, so one worker per node): each
    worker reads only its share of the training windows through Ray Data; after every epoch the
    workers' weights agree (MultiWorkerMirroredStrategy all-reduces the gradients: digest min == max
    over the workers), both took the same steps, and the loss follows an in-process run at the same
    global batch (2 x 8 = 16)."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from models.sasrec import SasrecEngine
    from models.sasrec.model import training_windows
    from recdata.dataset import VAL, prepare

    log = write_cyclic_log(home, users=64, items=25, seed=1, lengths=(5, 12), name="tiny.txt")
    common = ["--format", "sasrec", "--path", str(log), "--config", str(tiny_yaml(home, jit_compile=False, epochs=3,
                                                                                 dropout=0.0))]
    ds = prepare("sasrec", log)
    one = train_sasrec.parse_args([*common, "--batch", "16"])
    reference = SasrecEngine(train_sasrec.build_config(one), ds.catalog).fit(
        ds.train, ds.interactions.select(VAL), progress=False).history
    two = train_sasrec.parse_args([*common, "--batch", "8", "--num-workers", "2", "--cpus-per-worker", "1",
                                   "--max-failures", "0"])
    ray_tmp = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # AF_UNIX socket paths must stay < 108 bytes
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)  # cluster_utils writes its address file under it
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, runtime_env={"env_vars": {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "RAY_AUTH_MODE": "disabled"}})
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 2 and all(n["Resources"]["CPU"] == 1 for n in alive)
        history = train_sasrec.fit_distributed(two, train_sasrec.build_config(two), 2, ds).history
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)

    assert [r["workers"] for r in history] == [2] * 3
    lo, hi = [r["weights_digest_min"] for r in history], [r["weights_digest_max"] for r in history]
    assert lo == hi and len(set(lo)) == 3  # in sync at every epoch, and the weights moved
    windows = len(training_windows(*ds.train.sequences(), 8)[0])
    assert [r["train_windows_total"] for r in history] == [windows] * 3  # the shards add up to all the data
    assert [r["train_windows_worker"] for r in history] == [windows // 2] * 3  # each worker holds half
    assert history[0]["steps"] > 0 and [r["steps_total"] for r in history] == [2 * r["steps"] for r in history]
    val_users = len(ds.interactions.select(VAL))  # validation too: each worker scores its half
    assert [(r["val_users_worker"], r["val_users_total"]) for r in history] == [(val_users // 2, val_users)] * 3
    losses = [r["loss"] for r in history]
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(losses, [r["loss"] for r in reference], rtol=0.03)


def test_pipeline_stage_derives_settings_from_the_data_and_options_override(home, capsys):
    """The pipeline's `sasrec` stage (trainers.train_sasrec.train) gets the CLI's data-derived settings,
    with its options on top; `derive: false` takes the options as the whole config."""
    from recdata.dataset import prepare

    ds = prepare("sasrec", write_log(home))
    options = {"hidden": 16, "blocks": 1, "batch": 16, "epochs": 1, "max_train_minutes": 0.5}
    with tracking.run("sasrec", run_name="derived") as run:
        out = train_sasrec.train(ds, options, register=False)
    printed = capsys.readouterr().out
    assert "settings derived from the training data" in printed and "max_len 20: 99% of training histories" in printed
    import mlflow

    params = mlflow.MlflowClient(tracking.tracking_uri()).get_run(run.info.run_id).data.params
    assert params["cfg.hidden"] == "16" and params["cfg.max_len"] == "20"   # an option; derived (12 events -> 20)
    assert params["cfg.dropout"] == "0.5" and params["cfg.ema_decay"] == "0.998"  # derived: short histories
    assert out["epochs"] == 1

    with tracking.run("sasrec", run_name="given") as run:
        train_sasrec.train(ds, {**options, "derive": False}, register=False)
    params = mlflow.MlflowClient(tracking.tracking_uri()).get_run(run.info.run_id).data.params
    assert params["cfg.dropout"] == "0.2" and params["cfg.max_len"] == "200"  # SasrecConfig's own defaults
    with pytest.raises(ValueError, match="hiden"):
        train_sasrec.train(ds, {"hiden": 16}, register=False)
