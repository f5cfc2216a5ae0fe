import numpy as np
import pandas as pd
import pytest

from support import shared_data
from recdata.dataset import (TEST, TEST_FOLD_IN, TRAIN, VAL, Catalog, PreparedDataset, encode, leave_one_out,
                             prepare, user_holdout)
from recdata.evaluation import evaluation_batches
from recdata.schema import BadRowReport, EventLog, make_events


def tiny_log():
    # user 10: a(t1) b(t2) a(t3, cart) c(t4); user 20: b c; item z only in the catalog (cold start)
    ev = make_events(user=[10, 10, 10, 10, 20, 20], item=["a", "b", "a", "c", "b", "c"],
                     ts=[1, 2, 3, 4, 1, 2], event=[0, 0, 1, 0, 0, 0])
    items = pd.DataFrame({"item": ["a", "b", "c", "z"], "title": ["A", "B", "C", "Z"]})
    return EventLog(ev, items, BadRowReport(), "tiny", 6)


def test_catalog_maps_both_ways_and_keeps_cold_items():
    cat, inter = encode(tiny_log())
    assert cat.n_items == 4 and cat.item_raw(cat.item_index(["z"]))[0] == "z"
    assert cat.item_index(["a", "nope"]).tolist() == [0, -1]
    assert cat.items["title"].tolist() == ["A", "B", "C", "Z"]
    int_cat = Catalog(np.array([1]), np.array([101, 204]))
    assert int_cat.item_index(["204", 101, "x"]).tolist() == [1, 0, -1]  # JSON ints or strings


def test_repeats_collapse_to_first_time_with_strongest_event():
    cat, inter = encode(tiny_log())
    u10 = inter.frame[inter.frame.uidx == cat.user_index([10])[0]]
    assert cat.item_raw(u10.iidx).tolist() == ["a", "b", "c"]
    assert u10.event.tolist() == [1, 0, 0] and u10.weight.tolist() == [3.0, 1.0, 1.0]
    _, raw = encode(tiny_log(), collapse_repeats=False)
    assert len(raw) == 6


def test_leave_one_out_by_time():
    cat, inter = encode(tiny_log())
    inter = leave_one_out(inter)
    f = inter.frame
    u10 = f[f.uidx == cat.user_index([10])[0]]
    assert u10.split.tolist() == [TRAIN, VAL, TEST]
    assert (f[f.uidx == cat.user_index([20])[0]].split == TRAIN).all()  # too short to hold out


def test_evaluation_histories_exclude_the_future():
    cat, inter = encode(tiny_log())
    ds = PreparedDataset(cat, leave_one_out(inter), {"split": "loo"})
    (batch, targets), = list(evaluation_batches(ds, "test"))
    assert cat.item_raw(batch.items[0]).tolist() == ["a", "b"] and cat.item_raw(targets[0]).tolist() == ["c"]
    (batch, targets), = list(evaluation_batches(ds, "val"))
    assert cat.item_raw(batch.items[0]).tolist() == ["a"] and cat.item_raw(targets[0]).tolist() == ["b"]


def test_user_holdout_keeps_heldout_users_out_of_train():
    rng = np.random.default_rng(0)
    n = 2000
    ev = make_events(rng.integers(0, 100, n), rng.integers(0, 50, n), np.arange(n), np.zeros(n))
    cat, inter = encode(EventLog(ev, pd.DataFrame({"item": np.arange(50)}), BadRowReport(), "", n))
    split = user_holdout(inter, n_heldout=10, seed=1)
    f = split.frame
    held = f[f.split.isin([TEST, TEST_FOLD_IN])].uidx.unique()
    assert len(held) == 10
    assert not set(held) & set(f[f.split == TRAIN].uidx)
    share = (f.split == TEST_FOLD_IN).sum() / f.split.isin([TEST, TEST_FOLD_IN]).sum()
    assert 0.7 < share < 0.9


def test_prepare_caches_parquet(tmp_path):
    path = shared_data("ml-100k")
    ds = prepare("recbole", path, cache_dir=tmp_path)
    folder = tmp_path / ds.meta["fingerprint"]
    assert (folder / "events.parquet").exists()
    again = PreparedDataset.load(folder)
    assert again.catalog.n_items == 1682 and len(again.interactions) == 100000
    assert (again.interactions.frame.split == TEST).sum() == 943
