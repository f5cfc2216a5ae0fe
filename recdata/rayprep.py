"""Preparation on Ray Data: the prepared data of `recdata.dataset.prepare`, for logs that outgrow one process.

Same input, same output: the rows kept out (and the reasons, files and lines in the report), the id
encoding, the de-duplication and both splits equal the pandas path's row for row (a test holds them
to it); only the layout differs -- the events are Parquet shards, `events/part-*.parquet`, each holding
whole users, beside the same `users.parquet`, `items.parquet` and `meta.json`.

    read      `recdata.rayread`: one task per Parquet file and per 64 MB of a CSV, checked chunk by
              chunk by the pandas loader's own checks; rows stamped with (file, line) as `pos`.
    items     per block, one row per item (first position, last attribute row), folded on the driver
              as the blocks stream in: the item order and the attributes of each item's last row.
    users     a hash shuffle in tasks: each block cut into one part per bucket of hash(user) % buckets,
              one task per bucket (never one call per user: millions of tiny groups are slow) runs
              the pandas `encode` (de-duplication) and `leave_one_out` on its own users -- both only
              look within a user -- and returns them with its users' rows of the user table.
    encode    the driver orders users and items by first position (as `pd.unique` over the input
              does) and broadcasts the id maps; a row-wise `map_batches` writes dense ids and, for the
              user-holdout split, the same random draws as the pandas path (PCG64 advanced to each
              row's global position).

Memory: the driver holds one row per user and per item (id maps, first positions, row counts; while
items fold, a few rows per item) and a bounded bad-row report, never the events; each task holds one
chunk (read, `chunksize` rows) or one bucket (users, ~500k rows unless `buckets` says otherwise); the
object store holds the checked rows (spilling to disk when it fills).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recdata.dataset import AFTER_TEST, TEST, TRAIN, VAL, Catalog, encode, leave_one_out
from recdata.loaders import _rees46_title
from recdata.rayread import ATTRS, LINE_BITS, RAY_FORMATS, RANGE_BYTES, input_files, rees46_datasource
from recdata.schema import EVENT_NAMES, MAX_LINES_PER_REASON, BadRowReport, DataError, EventLog

ITEM_FOLD_ROWS = 500_000  # item partials the driver lets pend before folding them (and at least 2x the table)

# ---------------------------------------------------------------------------------------------------
# per-bucket work (pandas inside one task)
# ---------------------------------------------------------------------------------------------------
def _bucket_of(ids: np.ndarray, buckets: int) -> np.ndarray:
    return (pd.util.hash_array(np.asarray(ids)) % np.uint64(buckets)).astype(np.int64)


def _items_partial(df: pd.DataFrame) -> pd.DataFrame:
    """One row per item of this block: its first position, and its last attribute row's position and
    attributes. Shrinks a block to at most one row per item before the shuffle."""
    first = df.groupby("item", sort=False)["pos"].min().rename("first_pos")
    last = (df.loc[df["has_attrs"].to_numpy(), ["item", "pos", *ATTRS, "price"]].sort_values("pos")
            .drop_duplicates("item", keep="last").set_index("item").rename(columns={"pos": "last_pos"}))
    out = pd.DataFrame(first).join(last).rename_axis("item").reset_index()
    return out.assign(last_pos=out["last_pos"].fillna(-1).astype(np.int64))


def _fold_items(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per item from partials (the blocks', or earlier folds'): the earliest first position
    (the catalog order) and the latest attribute row (its position kept, so folds can be folded)."""
    df = pd.concat(parts, ignore_index=True)
    first = df.groupby("item", sort=False)["first_pos"].min()
    last = df.sort_values("last_pos", kind="stable").drop_duplicates("item", keep="last").set_index("item")
    return last.assign(first_pos=first.reindex(last.index).to_numpy()).rename_axis("item").reset_index()


def _users_of_bucket(df: pd.DataFrame, split: str, collapse_repeats: bool) -> pd.DataFrame:
    """The pandas path's per-user steps on this bucket's users, with bucket-local ids: `encode`
    (time order, de-duplication) and, for loo, `leave_one_out`. Adds each row's rank in its user's
    sequence, the rank of its (user, item) pair's first row, the user's first input position and
    row count -- what the driver needs to place every row globally."""
    df = df.sort_values("pos", kind="stable").reset_index(drop=True)  # input order: encode's tie-break
    upos = df.groupby("user", sort=False)["pos"].min()
    # Event types as read (before de-duplication): the log statistics count them per user, here.
    # (A bincount: pd.crosstab aggregates group by group in Python, half this function's time.)
    codes, uniq = pd.factorize(df["user"].to_numpy())
    k = len(EVENT_NAMES)
    per_type = pd.DataFrame(
        np.bincount(codes * k + df["event"].to_numpy(np.int64), minlength=len(uniq) * k).reshape(-1, k), index=uniq)
    log = EventLog(df[["user", "item", "ts", "event", "weight", "session"]], pd.DataFrame({"item": []}),
                   BadRowReport(), "", len(df))
    cat, inter = encode(log, Catalog(pd.unique(df["user"].to_numpy()), pd.unique(df["item"].to_numpy())),
                        collapse_repeats=collapse_repeats)
    if split == "loo":
        inter = leave_one_out(inter)
    f = inter.frame
    local = f["uidx"].to_numpy()
    # Per-row counts as int32 (no user has 2^31 events): these blocks stay in the object store until the write.
    urank = f.groupby("uidx", sort=False).cumcount().to_numpy(np.int32)
    f = f.assign(user=cat.user_ids[local], item=cat.item_ids[f["iidx"].to_numpy()], urank=urank)
    f["pair_rank"] = f.groupby(["uidx", "iidx"], sort=False)["urank"].transform("first").to_numpy(np.int32)
    f["urows"] = np.bincount(local, minlength=cat.n_users).astype(np.int32)[local]
    f["upos"] = upos.reindex(cat.user_ids).to_numpy()[local]
    first = urank == 0
    for code in range(len(EVENT_NAMES)):
        f[f"n_event{code}"] = np.where(first, per_type[code].reindex(f["user"]).to_numpy(), 0).astype(np.int32)
    if "split" not in f:
        f["split"] = np.int8(TRAIN)
    return f.drop(columns=["uidx", "iidx"])


USER_COLS = ["user", "item", "ts", "event", "weight", "session", "pos"]  # what the per-user steps read
USER_TABLE = ["user", "upos", "urows", *(f"n_event{c}" for c in range(len(EVENT_NAMES)))]


def _bad_summary(b: pd.DataFrame) -> pd.DataFrame:
    """One block's bad rows as the report needs them: per reason the first MAX_LINES_PER_REASON lines
    and a count of the rest (line -1), so the driver holds a bounded report however many rows are bad."""
    lines = b["pos"].to_numpy() & ((1 << LINE_BITS) - 1)
    bad = pd.DataFrame({"reason": b["reason"].to_numpy(object), "line": lines,
                        "n": np.ones(len(b), np.int64)}).sort_values(["reason", "line"])
    rank = bad.groupby("reason", sort=False).cumcount().to_numpy()
    rest = bad[rank >= MAX_LINES_PER_REASON].groupby("reason", as_index=False)["n"].sum()
    return pd.concat([bad[rank < MAX_LINES_PER_REASON], rest.assign(line=-1)], ignore_index=True)


def _cut_block(block, buckets: int) -> list:
    """All the driver and the user shuffle need of one read block, in one pass over it: its bad-row
    summary, its item partial, the row counts of its buckets (the driver starts no reduce for an empty
    one), then its checked rows cut into one part per bucket of hash(user) -- the shuffle's map side."""
    df = block.to_pandas() if not isinstance(block, pd.DataFrame) else block
    good = df["reason"].to_numpy() == ""
    ok = df[good]
    bucket = _bucket_of(ok["user"].to_numpy(), buckets)
    order = np.argsort(bucket, kind="stable")
    cuts = np.searchsorted(bucket[order], np.arange(1, buckets))
    rows = ok[USER_COLS]
    return [_bad_summary(df[~good]), _items_partial(ok[["item", "pos", "has_attrs", *ATTRS, "price"]]),
            np.bincount(bucket, minlength=buckets), *(rows.iloc[part] for part in np.split(order, cuts))]


def _reduce_users(split: str, collapse_repeats: bool, *parts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reduce side: one bucket's rows through the per-user steps, and its users' table rows."""
    f = _users_of_bucket(pd.concat(parts, ignore_index=True), split, collapse_repeats)
    return f, f.loc[f["urank"].to_numpy() == 0, USER_TABLE].reset_index(drop=True)


def _encode_rows(df: pd.DataFrame, maps: dict) -> pd.DataFrame:
    """Row-wise: dense ids from the broadcast maps; the user-holdout split's codes and draws."""
    if not isinstance(maps, dict):  # an ObjectRef: the maps are put once, read zero-copy by each task
        import ray

        maps = ray.get(maps)
    u_sorted, u_order = maps["user_sorted"], maps["user_uidx"]
    uidx = u_order[np.searchsorted(u_sorted, df["user"].to_numpy())]
    iidx = maps["item_iidx"][np.searchsorted(maps["item_sorted"], df["item"].to_numpy())]
    split = df["split"].to_numpy(np.int8)
    if maps.get("role") is not None:
        role = maps["role"][uidx]
        split = np.full(len(df), TRAIN, np.int8)
        held = np.flatnonzero(role != TRAIN)
        if len(held):
            # The pandas path draws rng.random(len(frame)) after the permutation and gives each
            # (user, item) pair the draw at its first row's position in the whole, sorted frame. Here:
            # each held-out user's block of that stream, from the PCG64 state advanced to its offset.
            hu, inv = np.unique(uidx[held], return_inverse=True)
            off, n = maps["offset"][hu], maps["urows"][hu]
            order = np.argsort(off, kind="stable")
            bg = np.random.PCG64()
            bg.state = maps["rng_state"]
            gen, cursor = np.random.Generator(bg), 0
            blocks = [None] * len(hu)
            for j in order:
                bg.advance(int(off[j] - cursor))
                blocks[j] = gen.random(int(n[j]))
                cursor = int(off[j] + n[j])
            base = np.concatenate([[0], np.cumsum(n)[:-1]])
            draw = np.concatenate(blocks)[base[inv] + df["pair_rank"].to_numpy()[held]]
            r = role[held]
            split[held] = np.where(draw >= maps["fold_in"], r, r + 2).astype(np.int8)
    return pd.DataFrame({
        "uidx": uidx.astype(np.int64), "iidx": iidx.astype(np.int64), "ts": df["ts"].to_numpy(np.int64),
        "event": df["event"].to_numpy(np.int8), "weight": df["weight"].to_numpy(np.float32),
        "session": df["session"].to_numpy(np.int64), "repeat": df["repeat"].to_numpy(bool), "split": split,
        "urank": df["urank"].to_numpy(np.int64)})


# ---------------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------------
def _ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        # The cluster a job was submitted to (RAY_ADDRESS), else a private local one.
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                 log_to_driver=False)


def prepare_ray(fmt: str, path: str | Path, folder: str | Path, key: str, split: str = "loo",
                collapse_repeats: bool = True, buckets: int | None = None, chunksize: int = 500_000,
                range_bytes: int | None = None, **load_kw) -> dict:
    """Prepare `path` on Ray Data into `folder` (Parquet shards + catalog + meta.json); returns the meta.
    `buckets`: user hash buckets, each one task's worth of rows (default: ~500k rows each,
    at least one per CPU); `range_bytes`: a CSV is read by one task per this many bytes."""
    if fmt not in RAY_FORMATS:
        raise DataError(f"the Ray Data preparation reads {', '.join(RAY_FORMATS)} logs, not {fmt!r}; "
                        "use --engine pandas")
    if isinstance(path, (list, tuple)):
        raise DataError("the Ray Data preparation takes one input (a file or a folder of shards); "
                        "several inputs (base log + served events) go through --engine pandas")
    if load_kw:
        raise DataError(f"the Ray Data preparation takes no loader options ({sorted(load_kw)}); use --engine pandas")
    if split not in ("loo", "users"):
        raise DataError(f"unknown split {split!r}; use loo or users")
    import ray

    _ensure_ray()
    folder = Path(folder)
    files = input_files(path)
    t0 = time.perf_counter()

    def said(stage: str, what: str) -> None:  # one line per stage: where the time goes
        print(f"[prepare ray] {stage:<7} {what} ({time.perf_counter() - t0:.1f}s)", flush=True)

    # One read task per Parquet file and per range of a CSV, its chunks as blocks: no splitting into
    # many small blocks (per-block overhead dominates on a small machine).
    source = rees46_datasource(files, chunksize, range_bytes or RANGE_BYTES)
    n_tasks = len(source.get_read_tasks(1))
    raw = ray.data.read_datasource(source, override_num_blocks=n_tasks).materialize()
    total = raw.count()
    said("read", f"{total:,} rows from {len(files)} file(s) in {n_tasks} read task(s)")

    # One task per read block does everything the block feeds (see _cut_block): bad rows, item partial
    # and the map side of the user shuffle. The blocks leave the object store as their cuts finish.
    nb = buckets or max(int(ray.cluster_resources().get("CPU", 1)), -(-total // 500_000))
    cut_task = ray.remote(_cut_block).options(num_returns=nb + 3)
    cut = [cut_task.remote(block, nb) for block in raw.to_arrow_refs()]
    del raw

    # Bad rows: counted per reason, the first lines (sorted) kept, as the pandas report does.
    bad = pd.concat(ray.get([c[0] for c in cut]), ignore_index=True)
    report = BadRowReport(source=str(path))
    for reason, rows in (bad.groupby("reason", sort=False) if len(bad) else ()):
        report.counts[reason] = int(rows["n"].sum())
        report.lines[reason] = sorted(int(x) for x in rows["line"] if x >= 0)[:MAX_LINES_PER_REASON]
    n_good = total - report.total
    said("checked", f"{report.total:,} bad rows")
    if n_good == 0:
        raise DataError(f"{path}: no usable rows ({report.total} bad); see the bad-row report:\n{report.summary()}")

    # Items: the blocks' partials (one row per item each), folded on the driver in block order. The
    # driver holds the item table in the end anyway, so a shuffle would only add its scheduling (4 s of
    # the 12 s of Ray work at 10^6 events on 2 cores); pending partials are folded whenever they outgrow
    # twice the table, so the driver holds O(items) rows throughout.
    folded, pending, n_pending = None, [], 0
    for c in cut:
        part = ray.get(c[1])
        pending.append(part)
        n_pending += len(part)
        if n_pending > max(ITEM_FOLD_ROWS, 2 * (0 if folded is None else len(folded))):
            folded, pending, n_pending = _fold_items(([] if folded is None else [folded]) + pending), [], 0
    item_tab = (_fold_items(([] if folded is None else [folded]) + pending)
                .sort_values("first_pos", kind="stable").reset_index(drop=True))
    said("items", f"{len(item_tab):,} items")

    # Users: a hash shuffle in plain tasks. Each bucket's parts (from every block) meet in one task, which
    # runs the per-user steps on its users. (Ray Data's groupby either starts aggregator actors and
    # batches its input up to 1 GB per map task, or sorts every row by the key: 11.7 s at 10^7 events on
    # 2 cores, against 9.4 s for this stage done in tasks.) Only what the per-user steps read crosses
    # the shuffle (not the item attributes).
    counts = np.sum(ray.get([c[2] for c in cut]), axis=0)
    reduce_task = ray.remote(_reduce_users).options(num_returns=2)
    reduced = [reduce_task.remote(split, collapse_repeats, *(c[3 + b] for c in cut)) for b in np.flatnonzero(counts)]
    del cut
    users = (pd.concat(ray.get([r[1] for r in reduced]), ignore_index=True)
             .sort_values("upos", kind="stable").reset_index(drop=True))
    per_user = ray.data.from_pandas_refs([r[0] for r in reduced])
    n_users, n_items = len(users), len(item_tab)
    said("users", f"{n_users:,} users in {nb} buckets")
    u_raw, i_raw = users["user"].to_numpy(np.int64), item_tab["item"].to_numpy(np.int64)
    u_ord, i_ord = np.argsort(u_raw, kind="stable"), np.argsort(i_raw, kind="stable")
    maps = {"user_sorted": u_raw[u_ord], "user_uidx": u_ord.astype(np.int64),
            "item_sorted": i_raw[i_ord], "item_iidx": i_ord.astype(np.int64), "role": None}
    if split == "users":
        # recdata.dataset.user_holdout's draws, in the same order (defaults: 10% + 10% of users, 80% fold-in).
        n_heldout, fold_in, seed = 0.1, 0.8, 0
        rng = np.random.default_rng(seed)
        n = int(round(n_heldout * n_users))
        if 2 * n >= n_users:
            raise DataError(f"cannot hold out 2 x {n} users of {n_users}; lower n_heldout")
        perm = rng.permutation(np.arange(n_users))
        role = np.zeros(n_users, np.int8)
        role[perm[:n]], role[perm[n:2 * n]] = VAL, TEST
        urows = users["urows"].to_numpy(np.int64)
        maps.update(role=role, offset=np.concatenate([[0], np.cumsum(urows)[:-1]]).astype(np.int64), urows=urows,
                    rng_state=rng.bit_generator.state, fold_in=fold_in)
    maps_ref = ray.put(maps)

    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent if folder.parent.exists() else None))
    try:
        # Whole blocks (batch_size=None): a map_groups block holds whole users, and so does each shard.
        encoded = per_user.map_batches(_encode_rows, batch_format="pandas", batch_size=None, fn_args=(maps_ref,))
        encoded.write_parquet(str(tmp / "events"))
        shards = sorted((tmp / "events").glob("*.parquet"))
        for i, s in enumerate(shards):  # stable names; a reader sorts by (uidx, urank)
            s.rename(s.with_name(f"part-{i:05d}.parquet"))
        stats = _stats(tmp / "events")
        said("written", f"{stats['rows']:,} rows in {len(shards)} shards")

        # The catalog, as Catalog.from_log builds it (users and items by first appearance).
        # Built as the pandas loader builds it (object arrays -> pandas' inferred string dtype).
        items = pd.DataFrame({"item": i_raw, **{k: item_tab[k].to_numpy(object) for k in ATTRS},
                              "price": item_tab["price"].to_numpy(np.float32)})
        items = items[["item", "category", "category_id", "brand", "price"]]
        items["title"] = _rees46_title(items)
        Catalog(u_raw, i_raw, items).save(tmp)
        log_stats = {"source": str(path), "rows_read": int(total), "users": n_users, "items": n_items,
                     "catalog_items": n_items, "interactions": int(n_good),
                     "event_types": {name: int(users[f"n_event{i}"].sum()) for i, name in enumerate(EVENT_NAMES)},
                     "bad_rows": int(report.total), "bad_row_reasons": dict(report.counts)}
        meta = {"format": fmt, "path": str(path), "split": split, "fingerprint": key, **log_stats,
                "collapse_repeats": collapse_repeats, "interactions_encoded": stats["rows"],
                "repeat_rows": stats["repeat_rows"], "rows_after_test": stats["rows_after_test"],
                "bad_row_report": report.to_dict(), "engine": "ray", "event_shards": len(shards)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        if folder.exists():  # another run finished first: same inputs, same data
            return json.loads((folder / "meta.json").read_text())
        tmp.rename(folder)
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _stats(shards: Path) -> dict:
    """Counts over the written shards, one shard at a time."""
    import pyarrow.parquet as pq

    rows = repeats = after = 0
    for s in sorted(shards.glob("*.parquet")):
        t = pq.read_table(s, columns=["repeat", "split"]).to_pandas()
        rows += len(t)
        repeats += int(t["repeat"].sum())
        after += int((t["split"] == AFTER_TEST).sum())
    return {"rows": rows, "repeat_rows": repeats, "rows_after_test": after}
