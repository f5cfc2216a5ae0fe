import numpy as np
import pandas as pd
import pytest

from support import shared_data
from recdata.dataset import (TEST, TEST_CONTEXT, TEST_FOLD_IN, TRAIN, VAL, Catalog, PreparedDataset, encode,
                             leave_one_out, prepare, user_holdout)
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


def test_each_row_keeps_its_own_event_and_the_funnel_stays_visible():
    cat, inter = encode(tiny_log())
    u10 = inter.frame[inter.frame.uidx == cat.user_index([10])[0]]
    # a is a view at t1 (not a cart: the cart happens at t3, after b) and its cart is a row of its own.
    assert cat.item_raw(u10.iidx).tolist() == ["a", "b", "a", "c"]
    assert u10.ts.tolist() == [1, 2, 3, 4] and u10.event.tolist() == [0, 0, 1, 0]
    assert u10.weight.tolist() == [1.0, 1.0, 3.0, 1.0] and u10.repeat.tolist() == [False, False, True, False]


def test_re_views_collapse_but_every_funnel_step_stays():
    # view, view, cart, view, purchase, cart of one item -> view(t1), cart(t3), purchase(t5)
    ev = make_events(user=[1] * 6, item=["x"] * 6, ts=[1, 2, 3, 4, 5, 6], event=[0, 0, 1, 0, 2, 1])
    _, inter = encode(EventLog(ev, pd.DataFrame({"item": ["x"]}), BadRowReport(), "", 6))
    assert inter.frame.ts.tolist() == [1, 3, 5] and inter.frame.event.tolist() == [0, 1, 2]
    _, raw = encode(EventLog(ev, pd.DataFrame({"item": ["x"]}), BadRowReport(), "", 6), collapse_repeats=False)
    assert len(raw) == 6 and raw.frame.repeat.sum() == 5


def random_funnel_log(seed: int = 0, n: int = 3000) -> EventLog:
    rng = np.random.default_rng(seed)
    ev = make_events(rng.integers(0, 80, n), rng.integers(0, 40, n), rng.integers(0, 500, n),
                     rng.choice([0, 0, 0, 1, 2], n))
    return EventLog(ev, pd.DataFrame({"item": np.arange(40)}), BadRowReport(), "", n)


def test_no_row_carries_information_from_after_its_own_time():
    log = random_funnel_log()
    cat, inter = encode(log)
    raw = set(zip(cat.user_index(log.events.user), cat.item_index(log.events.item), log.events.ts, log.events.event))
    f = inter.frame
    # Every kept row is an event that really happened at that time, with that type.
    assert set(zip(f.uidx, f.iidx, f.ts, f.event)) <= raw
    # Along each (user, item) pair the kept events only move up the funnel.
    assert (f.groupby(["uidx", "iidx"]).event.diff().dropna() > 0).all()


def test_held_out_items_are_new_and_histories_stop_before_them():
    cat, inter = encode(random_funnel_log(seed=1))
    ds = PreparedDataset(cat, leave_one_out(inter), {"split": "loo"})
    f = ds.interactions.frame
    for split, code in (("val", VAL), ("test", TEST)):
        for batch, targets in evaluation_batches(ds, split):
            for u, hist, events, tgt in zip(batch.users, batch.items, batch.events, targets):
                assert tgt[0] not in hist  # a held-out item is never already in the history
                rows = f[f.uidx == u].reset_index(drop=True)  # this user's rows in time order
                at = int(np.flatnonzero(rows.split == code)[0])
                # The history is exactly what happened before the held-out item, with its own event types.
                assert hist.tolist() == rows.iidx[:at].tolist() and events.tolist() == rows.event[:at].tolist()
    assert not f[f.split.isin([VAL, TEST])].repeat.any()
    # Nothing at or after a held-out item trains a model.
    train = ds.train.frame.groupby("uidx").ts.max()
    val_ts = f[f.split == VAL].set_index("uidx").ts
    assert (train.reindex(val_ts.index) <= val_ts).all()


def test_leave_one_out_by_time():
    cat, inter = encode(tiny_log())
    inter = leave_one_out(inter)
    f = inter.frame
    u10 = f[f.uidx == cat.user_index([10])[0]]
    assert u10.split.tolist() == [TRAIN, VAL, TEST_CONTEXT, TEST]  # a's cart comes after b, before c
    assert (f[f.uidx == cat.user_index([20])[0]].split == TRAIN).all()  # too short to hold out


def test_evaluation_histories_exclude_the_future():
    cat, inter = encode(tiny_log())
    ds = PreparedDataset(cat, leave_one_out(inter), {"split": "loo"})
    (batch, targets), = list(evaluation_batches(ds, "test"))
    assert cat.item_raw(batch.items[0]).tolist() == ["a", "b", "a"] and batch.events[0].tolist() == [0, 0, 1]
    assert cat.item_raw(targets[0]).tolist() == ["c"]
    (batch, targets), = list(evaluation_batches(ds, "val"))
    assert cat.item_raw(batch.items[0]).tolist() == ["a"] and batch.events[0].tolist() == [0]  # a view, then
    assert cat.item_raw(targets[0]).tolist() == ["b"]


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


def test_user_holdout_keeps_each_pair_on_one_side():
    cat, inter = encode(random_funnel_log(seed=2))
    f = user_holdout(inter, n_heldout=10, seed=0).frame
    held = f[f.split.isin([TEST, TEST_FOLD_IN])]
    assert held.repeat.any()  # funnel steps exist among held-out users
    assert (held.groupby(["uidx", "iidx"]).split.nunique() == 1).all()


def test_prepare_caches_parquet(tmp_path):
    path = shared_data("ml-100k")
    ds = prepare("recbole", path, cache_dir=tmp_path)
    folder = tmp_path / ds.meta["fingerprint"]
    assert (folder / "events.parquet").exists()
    again = PreparedDataset.load(folder)
    assert again.catalog.n_items == 1682 and len(again.interactions) == 100000
    assert (again.interactions.frame.split == TEST).sum() == 943


@pytest.mark.parametrize("name", ["ml-1m", "amazon-toys"])
def test_logs_without_repeats_split_as_plain_leave_one_out(name, tmp_path):
    """ML-1M and the Amazon sets hold no repeated (user, item) pair, so the leak-free preparation must
    give exactly the positional split the published tables use (last -> test, second-to-last -> val):
    their prepared data, and so SASRec's ML-1M figures, are unchanged by it."""
    ds = prepare("sasrec", shared_data(name), cache_dir=tmp_path)
    f = ds.interactions.frame
    assert ds.meta["repeat_rows"] == 0 and ds.meta["rows_after_test"] == 0
    n = f.groupby("uidx").uidx.transform("size").to_numpy()
    from_end = n - 1 - f.groupby("uidx").cumcount().to_numpy()
    expected = np.where(n < 3, TRAIN, np.select([from_end == 0, from_end == 1], [TEST, VAL], TRAIN))
    assert (f.split.to_numpy() == expected).all()
    assert len(f) == ds.meta["rows_read"]  # nothing collapsed
