import os

from reccore import tracking


def test_default_store_follows_recsys_home_and_does_not_leak(recsys_home, tmp_path, monkeypatch):
    with tracking.run("t"):
        tracking.log_metrics({"hr@10": 0.5})
    assert (recsys_home / "mlflow.db").exists()
    assert "MLFLOW_TRACKING_URI" not in os.environ  # else jobs started from here would inherit it
    other = tmp_path / "other"
    monkeypatch.setenv("RECSYS_HOME", str(other))
    with tracking.run("t"):
        pass
    assert (other / "mlflow.db").exists()


def test_register_and_resolve_by_alias(recsys_home, tmp_path):
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    import mlflow

    with tracking.run("t"):
        tracking.configured_mlflow().log_artifacts(str(folder), artifact_path="engine")
        v1 = tracking.register(mlflow.get_artifact_uri("engine"), "thing")
    with tracking.run("t"):
        tracking.configured_mlflow().log_artifacts(str(folder), artifact_path="engine")
        v2 = tracking.register(mlflow.get_artifact_uri("engine"), "thing")
    assert (v1, v2) == ("1", "2") and tracking.model_version("thing") == "2"
    local = tracking.resolve_artifact("models:/thing@champion", tmp_path / "dl")
    assert (local / "manifest.json").exists()
