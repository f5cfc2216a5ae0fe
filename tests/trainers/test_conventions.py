"""One dialect across the jobs: the same data flags on every trainer, and one metric-name convention in
MLflow (so runs of different engines line up in one table)."""
from __future__ import annotations

import importlib
import re

import pytest

from reccore import tracking
from support import write_cyclic_log
from trainers.train_popularity import main as train_popularity

JOBS = ["trainers.train_popularity", "trainers.train_vae", "trainers.train_content", "trainers.train_dqn",
        "trainers.train_sasrec", "trainers.evaluate", "trainers.pipeline"]
DATA_FLAGS = ("--format", "--path", "--map", "--event-map")


@pytest.mark.parametrize("module", JOBS)
def test_every_job_takes_the_same_data_flags(module, capsys):
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(["--help"])
    assert done.value.code == 0
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", capsys.readouterr().out))
    assert set(DATA_FLAGS) <= flags, f"{module} lacks {sorted(set(DATA_FLAGS) - flags)}"
    assert not flags & {"--data", "--fmt"}, f"{module} has its own data flags {sorted(flags & {'--data', '--fmt'})}"


def test_metric_names_follow_one_convention(recsys_home, tmp_path):
    log = write_cyclic_log(tmp_path, users=40, items=20)
    assert train_popularity(["--format", "sasrec", "--path", str(log)]) == 0
    run = tracking.configured_mlflow().search_runs(experiment_names=["popularity"]).iloc[0]
    names = [c.removeprefix("metrics.") for c in run.index if c.startswith("metrics.")]
    assert "test_hr_at_10" in names and "val_ndcg_at_10" in names
    odd = [n for n in names if not re.fullmatch(r"(popularity_)?(val|test)_\w+|fit_seconds", n)]
    assert not odd, f"metric names outside the `<split>_<metric>` convention: {odd}"
