"""The Ray Data preparation gives the pandas path's prepared data, row for row, on a real local Ray."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recdata.dataset import PreparedDataset, prepare, prepare_folder
from recdata.schema import DataError

pytestmark = pytest.mark.ray_session  # starts its own Ray in-process: run apart (tests/run_suite.sh)

HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
BAD_LINES = [  # (text, reason): every kind of bad row the loader counts
    ("not a time,view,5,1,,,1.0,7,s", "missing or bad event_time"),
    ("2019-10-01 00:00:05 UTC,click,5,1,,,1.0,7,s", "unknown event_type"),
    ("2019-10-01 00:00:05 UTC,view,,1,,,1.0,7,s", "missing or bad product_id"),
    ("2019-10-01 00:00:05 UTC,view,5,1,,,1.0,x7,s", "missing or bad user_id"),
    ("2019-10-01 00:00:05 UTC,view,5,1,,,-3,7,s", "missing or bad price"),
    ("2019-10-01 00:00:05 UTC,view,5,1,,,1.0,7,s,extra", "wrong number of fields"),
]


def write_shards(folder: Path, seed: int = 0, rows: int = 1500, users: int = 120, items: int = 60,
                 bad: bool = True, many_bad: int = 0) -> tuple[Path, dict]:
    """Two REES46 CSV shards: users spanning both, re-views, funnel steps, equal timestamps, items
    seen again later with other attributes, and bad rows of every kind (`many_bad` more bad prices at
    the end of the second, past the report's cap on lines). Returns (folder, the lines the bad-row
    report must name per reason)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = 1569888000 + np.sort(rng.integers(0, 3000, rows))  # second resolution: many equal times
    u = rng.integers(1, users + 1, rows) * 1000 + 7
    i = rng.integers(1, items + 1, rows) * 10
    ev = rng.choice(["view", "view", "view", "cart", "purchase"], rows)
    brand = rng.choice(["acme", "", "bosch"], rows)
    price = np.round(rng.uniform(1, 99, rows), 2)
    lines = [f"{pd.Timestamp(x, unit='s'):%Y-%m-%d %H:%M:%S} UTC,{e},{it},{it // 10},cat.c{it % 7},{b},{p},{uu},"
             f"s{uu}-{x // 600}" for x, e, it, b, p, uu in zip(t, ev, i, brand, price, u)]
    half = rows // 2
    expect = {}
    for k, part in enumerate((lines[:half], lines[half:])):
        name = f"2019-10-{k + 1:02d}.csv"
        part = list(part)
        for j, (text, reason) in enumerate(BAD_LINES if bad else []):
            at = 40 * (j + 1) + k  # 0-based index among data lines
            part.insert(at, text)
            expect.setdefault(f"{reason} [{name}]", []).append(at + 2)  # +1 header, +1 one-based
        if bad:
            part.insert(300, "")  # a blank line is a bad row too (its empty event_time fails first)
            expect[f"missing or bad event_time [{name}]"].append(302)
        if k == 1 and many_bad:
            expect[f"missing or bad price [{name}]"] += list(range(len(part) + 2, len(part) + 2 + many_bad))
            part += ["2019-10-02 00:00:05 UTC,view,5,1,,,-1,7,s"] * many_bad
        (folder / name).write_text(HEADER + "\n" + "\n".join(part) + "\n")
    return folder, expect


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # AF_UNIX socket paths must stay < 108 bytes
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def assert_same(a: PreparedDataset, b: PreparedDataset) -> None:
    np.testing.assert_array_equal(a.catalog.user_ids, b.catalog.user_ids)
    np.testing.assert_array_equal(a.catalog.item_ids, b.catalog.item_ids)
    pd.testing.assert_frame_equal(a.catalog.items, b.catalog.items)
    pd.testing.assert_frame_equal(a.interactions.frame, b.interactions.frame)
    strip = lambda m: {k: v for k, v in m.items() if k not in ("engine", "event_shards")}  # noqa: E731
    assert strip(a.meta) == strip(b.meta)


@pytest.mark.parametrize("split, many_bad", [("loo", 0), ("users", 1500)])
def test_ray_data_path_gives_the_pandas_prepared_data(ray_local, tmp_path, monkeypatch, split, many_bad):
    log, expect = write_shards(tmp_path / "log", many_bad=many_bad)
    from recdata import rayprep
    from recdata.rayread import csv_ranges

    # Each ~70 KB file read as byte ranges of ~20 KB by several tasks, lines counted across them.
    monkeypatch.setattr(rayprep, "RANGE_BYTES", 20_000)
    assert all(len(csv_ranges(f, 20_000)) >= 3 for f in log.glob("*.csv"))
    if split == "users":  # the driver folds the item partials block by block (a fold of folds)
        monkeypatch.setattr(rayprep, "ITEM_FOLD_ROWS", 1)
    pandas_ds = prepare("rees46", log, cache_dir=tmp_path / "pandas", split=split, engine="pandas")
    folder, meta = prepare_folder("rees46", log, tmp_path / "ray", split=split, engine="ray")
    ray_ds = PreparedDataset.load(folder)
    assert meta["engine"] == "ray" and pandas_ds.meta["engine"] == "pandas"
    assert_same(pandas_ds, ray_ds)
    f = pandas_ds.interactions.frame
    assert f["repeat"].any() and (f["event"] > 0).any() and len(np.unique(f["split"])) >= 3  # non-trivial data
    rep = meta["bad_row_report"]
    assert rep["total"] == 2 * (len(BAD_LINES) + 1) + many_bad and meta["rows_read"] == 1500 + rep["total"]
    assert rep["counts"] == {k: len(v) for k, v in expect.items()}
    assert rep["lines"] == {k: v[:100] for k, v in expect.items()}  # meta keeps the first 100 of each
    # Shards hold whole users: the sharded trainer can split by file without cutting a sequence.
    shards = sorted((folder / "events").glob("part-*.parquet"))
    assert meta["event_shards"] == len(shards) >= 2
    owners = [set(pd.read_parquet(s, columns=["uidx"])["uidx"]) for s in shards]
    assert sum(map(len, owners)) == len(set().union(*owners)) == pandas_ds.catalog.n_users


def test_ray_data_path_refuses_what_it_does_not_read(ray_local, tmp_path):
    from support import write_cyclic_log

    txt = write_cyclic_log(tmp_path, items=10)
    with pytest.raises(DataError, match="use --engine pandas"):
        prepare("sasrec", txt, cache_dir=tmp_path / "c", engine="ray")
    with pytest.raises(DataError, match="unknown engine"):
        prepare("rees46", txt, engine="spark")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .csv or .parquet files"):
        prepare("rees46", empty, cache_dir=tmp_path / "c", engine="ray")


def test_cli_prepares_on_ray_data_and_names_the_fix_for_what_it_cannot(ray_local, tmp_path, capsys):
    from trainers import data

    log, _ = write_shards(tmp_path / "log", rows=300)
    assert data.main(["prepare", "--format", "rees46", "--path", str(log), "--engine", "ray",
                      "--cache", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "(loo split, ray)" in out and "bad rows: 14 kept out" in out
    clean, _ = write_shards(tmp_path / "clean", rows=200, bad=False)
    assert data.main(["prepare", "--format", "rees46", "--path", str(clean / "2019-10-01.csv"), "--engine", "ray",
                      "--cache", str(tmp_path / "c")]) == 0
    assert "(loo split, ray)" in capsys.readouterr().out
    assert data.main(["prepare", "--format", "sasrec", "--path", str(log), "--engine", "ray",
                      "--cache", str(tmp_path / "c")]) == 2
    assert "use --engine pandas" in capsys.readouterr().err


def test_csv_ranges_cover_the_file_at_line_ends_with_their_line_numbers(tmp_path):
    from recdata.rayread import csv_ranges

    log, _ = write_shards(tmp_path / "log", rows=400)
    f = log / "2019-10-01.csv"
    data = f.read_bytes()
    for size in (1, 997, 5_000, 10**9):
        spans = csv_ranges(f, size)
        assert spans[0][0] == data.index(b"\n") + 1 and spans[-1][1] == len(data)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, nothing read twice
        for start, end, line in spans:
            assert data[end - 1:end] == b"\n" and line == data[:start].count(b"\n") + 1


def test_parquet_shards_prepare_as_their_csv_does(ray_local, tmp_path):
    """The same log as Parquet shards (one all strings, one typed: timestamps, ints, floats, as a
    re-partitioned export would be) gives the CSV's prepared data; a bad Parquet row is named by its
    row number."""
    log, _ = write_shards(tmp_path / "csv", rows=600, bad=False)
    pq = tmp_path / "pq"
    pq.mkdir()
    for k, f in enumerate(sorted(log.glob("*.csv"))):
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        if k == 1:
            df.loc[5, "price"] = ""  # a bad row in both forms: CSV line 7, Parquet row 6
            df.to_csv(f, index=False)
            df = df.assign(event_time=pd.to_datetime(df["event_time"], format="%Y-%m-%d %H:%M:%S UTC", utc=True),
                           product_id=df["product_id"].astype("int64"), user_id=df["user_id"].astype("int64"),
                           price=pd.to_numeric(df["price"]))
        df.to_parquet(pq / f.with_suffix(".parquet").name, index=False)
    from_csv = prepare("rees46", log, engine="pandas")
    folder, meta = prepare_folder("rees46", pq, tmp_path / "ray", engine="ray")
    assert from_csv.meta["bad_row_report"]["lines"] == {"missing or bad price [2019-10-02.csv]": [7]}
    assert meta["bad_row_report"]["lines"] == {"missing or bad price [2019-10-02.parquet]": [6]}
    from_pq = PreparedDataset.load(folder)
    np.testing.assert_array_equal(from_pq.catalog.user_ids, from_csv.catalog.user_ids)
    np.testing.assert_array_equal(from_pq.catalog.item_ids, from_csv.catalog.item_ids)
    pd.testing.assert_frame_equal(from_pq.catalog.items, from_csv.catalog.items)
    pd.testing.assert_frame_equal(from_pq.interactions.frame, from_csv.interactions.frame)
