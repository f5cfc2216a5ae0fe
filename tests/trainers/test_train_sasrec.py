"""The real SASRec training job on tiny data: MLflow run, learning curve, registry alias, Ray Train."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from support import write_cyclic_log
from trainers import train_sasrec, tracking


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
        train_sasrec.main(["--path", str(write_log(home)), "--config", str(bad)])
    with pytest.raises(ValueError, match="loss='hinge'"):
        train_sasrec.main(["--path", str(write_log(home)), "--config", str(tiny_yaml(home)), "--loss", "hinge"])


def test_ray_train_tensorflow_trainer_one_worker(home, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # AF_UNIX socket paths must stay < 108 bytes
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=ray_tmp,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                                       "RAY_AUTH_MODE": "disabled"}})
    try:
        summary = train_sasrec.main(["--path", str(write_log(home)), "--config", str(tiny_yaml(home, jit_compile=False)),
                                     "--num-workers", "1", "--cpus-per-worker", "1", "--register-as", "sasrec-dist"])
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert summary["epochs"] == 1 and summary["version"] == "1"
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    assert str(mlflow.MlflowClient().get_model_version_by_alias("sasrec-dist", "champion").version) == "1"
