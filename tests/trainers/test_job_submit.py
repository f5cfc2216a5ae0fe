"""`ray start --head` + `ray job submit --working-dir . -- python -m trainers.<name>`, as the README
says, against a real local head node with Ray 2.60's token authentication on."""
import pytest

from raycluster import LocalHead
from support import REPO, shared_data


@pytest.fixture(scope="module")
def head():
    h = LocalHead(num_cpus=2)
    yield h
    h.stop()


def test_dashboard_requires_the_token(head):
    assert head.get("/api/version") == 401
    assert head.get("/api/version", head.token_path.read_text()) == 200


def test_trainer_runs_unchanged_as_a_ray_job(head, tmp_path):
    data = shared_data("ml-100k")
    r = head.submit(["python", "-m", "trainers.train_popularity", "--format", "recbole", "--path", str(data)],
                    cwd=REPO, env_vars={"RECSYS_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "succeeded" in r.stdout and "'artifact': 'models:/popularity@champion'" in r.stdout
    assert (tmp_path / "mlflow.db").exists()  # registered into the store the job was pointed at


def test_pipeline_runs_as_one_ray_job(head, tmp_path):
    from recdata.synthetic import SyntheticConfig, write_csv

    events = tmp_path / "events.csv"
    write_csv(SyntheticConfig(n_users=150, n_items=500, seed=2), events)
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text("stages: [popularity, vae]\nvae: {epochs: 2, eval_every: 1, hidden: [16], latent: 8}\n")
    r = head.submit(["python", "-m", "trainers.pipeline", "--format", "rees46", "--path", str(events),
                     "--config", str(cfg)], cwd=REPO, env_vars={"RECSYS_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "[pipeline] vae        done" in r.stdout and "succeeded" in r.stdout
    assert (tmp_path / "home" / "pipeline" / "vae.json").exists()
