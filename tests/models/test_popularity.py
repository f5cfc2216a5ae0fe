import numpy as np
import pytest

from support import shared_data
from models.base import Engine, load_config
from models.popularity import PopularityConfig, PopularityEngine
from recdata.dataset import prepare
from recdata.evaluation import evaluate
from recdata.schema import HistoryBatch


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return prepare("recbole", shared_data("ml-100k"), cache_dir=tmp_path_factory.mktemp("prep"))


def test_recommend_filters_seen_and_business_filters(ml100k):
    pop = PopularityEngine(catalog=ml100k.catalog).fit(ml100k.train)
    best = np.argsort(-pop.counts, kind="stable")
    idx, _ = pop.recommend(HistoryBatch.of([best[:2]]), k=3)
    assert idx[0].tolist() == best[2:5].tolist()
    allowed = np.zeros(ml100k.catalog.n_items, bool)
    allowed[best[7:9]] = True
    idx, _ = pop.recommend(HistoryBatch.of([[]]), k=3, allowed=allowed)
    assert idx[0].tolist() == [best[7], best[8], -1]


def test_save_load_round_trip(ml100k, tmp_path):
    pop = PopularityEngine(PopularityConfig(use_weights=True), ml100k.catalog).fit(ml100k.train)
    back = Engine.load(pop.save(tmp_path / "pop"))
    assert isinstance(back, PopularityEngine) and back.config == pop.config
    batch = HistoryBatch.of([[0, 1], [5]])
    np.testing.assert_array_equal(back.score(batch), pop.score(batch))
    assert back.catalog.item_ids.tolist() == ml100k.catalog.item_ids.tolist()


def test_popularity_beats_nothing_but_is_above_chance(ml100k):
    pop = PopularityEngine(catalog=ml100k.catalog).fit(ml100k.train)
    r = evaluate(pop, ml100k, "test")
    chance = 10 / ml100k.catalog.n_items
    assert r["users"] == 943 and r["hr@10"] > 3 * chance


def test_unknown_config_key_fails_with_the_valid_keys(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("use_weights: true\nhalf_life: 3\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['half_life'\].*half_life_days"):
        load_config(PopularityConfig, y)
