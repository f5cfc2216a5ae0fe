"""The evaluation protocol on real data: scorers with no information score no better than chance,
and an engine with non-finite scores gets an error, not a figure."""
import numpy as np
import pytest

from support import shared_data
from recdata.dataset import prepare
from recdata import evaluation
from recdata.evaluation import EvaluationConfig, evaluate
from recdata.schema import HistoryBatch
from recdata.metrics import NonFiniteScores


class ConstantScorer:
    name = "constant"

    def __init__(self, n_items: int):
        self.n_items = n_items

    def score(self, batch: HistoryBatch) -> np.ndarray:
        return np.zeros((len(batch), self.n_items))


class RandomScorer(ConstantScorer):
    name = "random"

    def __init__(self, n_items: int, seed: int = 0):
        super().__init__(n_items)
        self.rng = np.random.default_rng(seed)

    def score(self, batch: HistoryBatch) -> np.ndarray:
        return self.rng.random((len(batch), self.n_items))


class BrokenScorer(ConstantScorer):
    name = "broken"

    def score(self, batch: HistoryBatch) -> np.ndarray:
        out = np.ones((len(batch), self.n_items))
        out[0, 3] = np.nan  # the first user of every batch
        return out


@pytest.fixture(scope="module")
def ml1m(tmp_path_factory):
    return prepare("sasrec", shared_data("ml-1m"), cache_dir=tmp_path_factory.mktemp("prepared"))


def _chance_hr10(ds) -> tuple[float, float]:
    """Expected HR@10 of a random ranking of each test user's unseen items, and its standard error."""
    f = ds.interactions.frame
    seen = np.bincount(f["uidx"].to_numpy(), minlength=ds.catalog.n_users)  # history + target
    n_unseen = ds.catalog.n_items - (seen[np.unique(f["uidx"][f["split"] == 2])] - 1)
    p = np.minimum(10, n_unseen) / n_unseen
    return float(p.mean()), float(np.sqrt((p * (1 - p)).sum()) / len(p))


def test_constant_and_random_scorers_score_at_chance_or_below(ml1m):
    chance, se = _chance_hr10(ml1m)
    assert chance == pytest.approx(10 / ml1m.catalog.n_items, rel=0.1)
    rnd = evaluate(RandomScorer(ml1m.catalog.n_items), ml1m)["hr@10"]
    assert abs(rnd - chance) < 4 * se, (rnd, chance, se)
    const = evaluate(ConstantScorer(ml1m.catalog.n_items), ml1m)["hr@10"]
    # Every tie counts against the target: no better than chance (here: never a hit at all).
    assert const <= chance and const == 0.0


def test_non_finite_scores_name_the_engine_and_count_users(ml1m):
    with pytest.raises(NonFiniteScores, match=r"'broken'.* 61 of 6040 users"):
        evaluate(BrokenScorer(ml1m.catalog.n_items), ml1m, batch_size=100)  # 61 batches


class RecordingScorer(RandomScorer):
    name = "recording"

    def __init__(self, n_items: int):
        super().__init__(n_items)
        self.users: list[int] = []

    def score(self, batch: HistoryBatch) -> np.ndarray:
        self.users += list(batch.users)
        return super().score(batch)


def test_a_user_cap_evaluates_the_same_uniform_sample_for_every_engine(ml1m):
    first, second = RecordingScorer(ml1m.catalog.n_items), RecordingScorer(ml1m.catalog.n_items)
    out = evaluate(first, ml1m, max_users=1000)
    evaluate(second, ml1m, max_users=1000)
    assert out["users"] == 1000 and out["users_total"] == 6040
    assert first.users == second.users == sorted(set(first.users))
    assert max(first.users) > 5000  # a sample across all users, not the first thousand
    # The process's evaluation config sets the default cap (a pipeline stage sets the pipeline's).
    evaluation.use(EvaluationConfig(max_users=300))
    try:
        assert evaluate(ConstantScorer(ml1m.catalog.n_items), ml1m)["users"] == 300
    finally:
        evaluation.use(EvaluationConfig())
    full = evaluate(ConstantScorer(ml1m.catalog.n_items), ml1m)
    assert full["users"] == 6040 and "users_total" not in full  # under the default 50,000 cap: every user
