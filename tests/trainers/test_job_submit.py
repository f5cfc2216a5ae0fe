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
