"""The promotion gate on a real MLflow registry: a worse retrained engine stays @challenger, a better
one takes @champion, both figures and the decision are logged; `recsys promote` overrides it."""
import numpy as np
import pytest

from models.markov import MarkovEngine
from models.popularity import PopularityEngine
from reccore import tracking
from recdata.dataset import Interactions, prepare
from trainers import gate
from trainers.cli import app
from trainers.engine_job import fit_evaluate_register


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    from recdata.synthetic import SyntheticConfig, write_csv

    path = tmp_path_factory.mktemp("data") / "events.csv"
    write_csv(SyntheticConfig(n_users=300, n_items=500, seed=3), path)
    return prepare("rees46", path)


def _register(engine, ds, fit=None):
    with tracking.run("gate-test"):
        return fit_evaluate_register(engine, ds, "shop", fit=fit)


def test_gate_refuses_a_worse_engine_and_promotes_a_better_one(ds, recsys_home, capsys):
    gate.use(gate.GateConfig(margin=0.0))
    first = _register(PopularityEngine(catalog=ds.catalog), ds)
    assert (first["version"], first["alias"]) == ("1", "champion")

    # Worse: popularity counted on a sliver of the training data.
    f = ds.train.frame
    sliver = Interactions(f.iloc[: len(f) // 50].reset_index(drop=True), ds.train.n_users, ds.train.n_items)
    worse = PopularityEngine(catalog=ds.catalog)
    out = _register(worse, ds, fit=lambda: worse.fit(sliver))
    assert (out["version"], out["alias"]) == ("2", "challenger")
    assert tracking.model_version("shop", "champion") == "1" and tracking.model_version("shop", "challenger") == "2"
    printed = capsys.readouterr().out
    assert "[gate] shop v2 kept as @challenger" in printed and "vs champion v1" in printed

    # Better: item-to-item transitions find the synthetic data's planted chains.
    better = _register(MarkovEngine(None, ds.catalog), ds)
    assert (better["version"], better["alias"]) == ("3", "champion")
    assert "[gate] shop v3 promoted to @champion" in capsys.readouterr().out

    mlflow = tracking.configured_mlflow()
    runs = mlflow.search_runs(experiment_names=["gate-test"]).sort_values("start_time")
    assert runs["params.gate_decision"].tolist() == ["champion", "challenger", "champion"]
    second = runs.iloc[1]
    assert second["metrics.val_gate_candidate"] < second["metrics.val_gate_champion"]
    assert np.isclose(runs.iloc[2]["metrics.val_gate_champion"], runs.iloc[0]["metrics.val_gate_candidate"])

    # The override: back to v1 by hand, on the record.
    assert app(["promote", "shop", "1", "--reason", "test"]) == 0
    assert tracking.model_version("shop", "champion") == "1" and tracking.model_version("shop", "challenger") == "3"
    promos = mlflow.search_runs(experiment_names=["promotions"])
    assert promos["params.previous_champion"].tolist() == ["3"] and promos["params.reason"].tolist() == ["test"]
    assert app(["promote", "shop", "99"]) == 2
    assert "has no version 99" in capsys.readouterr().err


def test_champion_is_scored_through_its_own_catalog(ds):
    """A champion trained on fewer items still gets a figure on today's split: unknown items rank last."""
    engine = PopularityEngine(catalog=ds.catalog).fit(ds.train)
    bridge = gate.CatalogBridge(engine, ds.catalog)
    assert bridge.same
    from recdata.schema import HistoryBatch

    batch = HistoryBatch.of([[0, 1], [2]], users=[0, 1])
    np.testing.assert_allclose(bridge.score(batch), engine.score(batch))
