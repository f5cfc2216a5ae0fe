"""Catalog (id maps both ways + item text), encoded interactions, splits, and the Parquet cache.

Engines work on dense indices: users 0..U-1, items 0..I-1. The catalog translates both ways and is
saved with every model artifact, so a served model answers in the ids of the data it was trained on.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recdata.eventlog import load_many
from recdata.loaders import load
from recdata.schema import DataError, EventLog

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2


class Catalog:
    """Dense ids for users and items, and the item table in item-index order."""

    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, items: pd.DataFrame | None = None):
        self.user_ids = np.asarray(user_ids)
        self.item_ids = np.asarray(item_ids)
        self.items = (items if items is not None else pd.DataFrame({"item": self.item_ids})).reset_index(drop=True)
        if len(self.items) != len(self.item_ids):
            raise DataError("catalog item table must have one row per item id")
        self._item_index = pd.Index(self.item_ids)
        self._user_index = pd.Index(self.user_ids)

    @classmethod
    def from_log(cls, log: EventLog) -> "Catalog":
        # Items: those with events first (in order of first appearance), then catalog-only items
        # (cold start) -- so an engine that only knows interacted items can use a prefix.
        seen = pd.unique(log.events["item"].to_numpy())
        extra = np.setdiff1d(log.items["item"].to_numpy(), seen) if len(log.items) else np.empty(0)
        item_ids = np.concatenate([seen, extra]) if len(extra) else seen
        meta = log.items.drop_duplicates("item").set_index("item")
        items = meta.reindex(item_ids).reset_index()
        items = items.rename(columns={items.columns[0]: "item"})
        return cls(pd.unique(log.events["user"].to_numpy()), item_ids, items)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def item_index(self, raw_ids) -> np.ndarray:
        """Raw item ids -> dense indices; -1 for ids the catalog does not know."""
        return self._item_index.get_indexer(self._coerce(raw_ids, self.item_ids))

    def user_index(self, raw_ids) -> np.ndarray:
        return self._user_index.get_indexer(self._coerce(raw_ids, self.user_ids))

    def item_raw(self, idx) -> np.ndarray:
        return self.item_ids[np.asarray(idx, dtype=np.int64)]

    @staticmethod
    def _coerce(raw_ids, like: np.ndarray) -> list:
        # JSON clients send 101 or "101"; match the catalog's id type either way.
        raw = list(np.atleast_1d(np.asarray(raw_ids, dtype=object)))
        if np.issubdtype(like.dtype, np.integer):
            out = []
            for r in raw:
                try:
                    out.append(int(r))
                except (TypeError, ValueError):
                    out.append(-(2**62))  # a value no catalog holds -> -1
            return out
        return [str(r) for r in raw]

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"user": self.user_ids}).to_parquet(folder / "users.parquet", index=False)
        self.items.assign(item=self.item_ids).to_parquet(folder / "items.parquet", index=False)

    @classmethod
    def load(cls, folder: str | Path) -> "Catalog":
        folder = Path(folder)
        items = pd.read_parquet(folder / "items.parquet")
        users = pd.read_parquet(folder / "users.parquet")["user"].to_numpy()
        return cls(users, items["item"].to_numpy(), items)


@dataclass
class Interactions:
    """Encoded events sorted by (user, ts, input order): columns uidx, iidx, ts, event, weight
    (+ split code when split). A thin view over one DataFrame; engines read arrays from it."""

    frame: pd.DataFrame
    n_users: int
    n_items: int

    def __len__(self) -> int:
        return len(self.frame)

    def select(self, split_codes) -> "Interactions":
        mask = np.isin(self.frame["split"].to_numpy(), np.atleast_1d(split_codes))
        return Interactions(self.frame.loc[mask].reset_index(drop=True), self.n_users, self.n_items)

    def users(self) -> np.ndarray:
        return np.unique(self.frame["uidx"].to_numpy())

    def sequences(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR layout of each user's time-ordered items: (indptr [U+1], items [N], events [N])."""
        counts = np.bincount(self.frame["uidx"].to_numpy(), minlength=self.n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        return indptr, self.frame["iidx"].to_numpy(np.int64), self.frame["event"].to_numpy(np.int8)

    def matrix(self, binary: bool = False) -> sp.csr_matrix:
        """User x item matrix of summed weights (or 0/1)."""
        f = self.frame
        data = np.ones(len(f), np.float32) if binary else f["weight"].to_numpy(np.float32)
        m = sp.csr_matrix((data, (f["uidx"].to_numpy(), f["iidx"].to_numpy())), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.frame["iidx"].to_numpy(), minlength=self.n_items)


def encode(
    log: EventLog, catalog: Catalog | None = None, collapse_repeats: bool = True
) -> tuple[Catalog, Interactions]:
    """Dense-index the log, sorted by (user, time). Every row keeps the event type and weight of its
    own occurrence: nothing from later in time is written into an earlier row.

    Column `repeat` marks rows whose (user, item) pair already occurred earlier. With
    `collapse_repeats` (default), a repeat is kept only when it moves the pair up the funnel -- a cart
    after views, a purchase after a cart -- so "viewed at t1, bought at t3" stays two rows (view at t1,
    purchase at t3), and the many re-views of one product collapse into its first view. Without
    collapsing, every event stays. Leave-one-out targets are always first occurrences (see
    `leave_one_out`), so a held-out item is never already in the history."""
    catalog = catalog or Catalog.from_log(log)
    ev = log.events
    frame = pd.DataFrame(
        {
            "uidx": catalog.user_index(ev["user"].to_numpy()).astype(np.int64),
            "iidx": catalog.item_index(ev["item"].to_numpy()).astype(np.int64),
            "ts": ev["ts"].to_numpy(np.int64),
            "event": ev["event"].to_numpy(np.int8),
            "weight": ev["weight"].to_numpy(np.float32),
        }
    )
    if "session" in ev:
        frame["session"] = ev["session"].to_numpy()
    # Stable sort keeps input order among equal timestamps (the source's own order is the tie-break).
    frame = frame.sort_values(["uidx", "ts"], kind="stable").reset_index(drop=True)
    frame["repeat"] = frame.duplicated(["uidx", "iidx"])
    if collapse_repeats and frame["repeat"].any():
        pair = frame.groupby(["uidx", "iidx"], sort=False)["event"]
        strongest_before = pair.cummax().groupby([frame["uidx"], frame["iidx"]], sort=False).shift(1)
        funnel_step = frame["event"].to_numpy() > strongest_before.fillna(np.inf).to_numpy()
        frame = frame.loc[~frame["repeat"].to_numpy() | funnel_step].reset_index(drop=True)
    return catalog, Interactions(frame, catalog.n_users, catalog.n_items)


TEST_CONTEXT, AFTER_TEST = 5, 6
"""Leave-one-out codes for repeat rows around the held-out items: a repeat between the validation and
the test target is history for the test item only; anything after the test target is in no history
and never trained on (it would put the future into the past)."""


def leave_one_out(inter: Interactions, min_len: int = 3) -> Interactions:
    """Hold out each user's last *new* item (first occurrence of a pair) as test and the one before as
    validation, by time. Train holds everything before the validation item; repeat rows (funnel steps)
    after it are TEST_CONTEXT (before the test item) or AFTER_TEST. Users with fewer than `min_len`
    distinct items stay wholly in train: they have too little to hold anything out."""
    f = inter.frame
    uidx = f["uidx"].to_numpy()
    novel = ~f["repeat"].to_numpy() if "repeat" in f else np.ones(len(f), bool)
    n_novel = np.bincount(uidx, weights=novel, minlength=inter.n_users).astype(np.int64)
    upto = pd.Series(novel.astype(np.int64)).groupby(uidx).cumsum().to_numpy()  # novel rows so far
    total = n_novel[uidx]
    split = np.full(len(f), TRAIN, np.int8)
    held = total >= min_len
    split[held & (upto == total) & novel] = TEST
    split[held & (upto == total) & ~novel] = AFTER_TEST
    split[held & (upto == total - 1) & novel] = VAL
    split[held & (upto == total - 1) & ~novel] = TEST_CONTEXT
    return Interactions(f.assign(split=split), inter.n_users, inter.n_items)


def user_holdout(
    inter: Interactions, n_heldout: int | float = 0.1, fold_in: float = 0.8, seed: int = 0
) -> Interactions:
    """Strong generalization (Liang et al. 2018, Mult-VAE): held-out users are absent from training;
    for each, a random `fold_in` share of their items is the input and the rest the target (all rows
    of one (user, item) pair fall on the same side, so a target is never already in the input).
    `n_heldout` users (a count, or a share when < 1) go to validation and as many to test.
    Split codes: train rows 0; val users' fold-in rows 3, targets 1; test users' fold-in 4, targets 2."""
    rng = np.random.default_rng(seed)
    users = inter.users()
    n = int(round(n_heldout * len(users))) if n_heldout < 1 else int(n_heldout)
    if 2 * n >= len(users):
        raise DataError(f"cannot hold out 2 x {n} users of {len(users)}; lower n_heldout")
    perm = rng.permutation(users)
    role = np.zeros(inter.n_users, np.int8)
    role[perm[:n]], role[perm[n : 2 * n]] = VAL, TEST
    f = inter.frame
    r = role[f["uidx"].to_numpy()]
    draw = rng.random(len(f))
    # Each pair takes the draw of its first row (rows are time-ordered within a user).
    first_row = f.groupby(["uidx", "iidx"], sort=False).cumcount().to_numpy() == 0
    pair_id = f.groupby(["uidx", "iidx"], sort=False).ngroup().to_numpy()
    pair_draw = np.empty(pair_id.max() + 1 if len(f) else 0)
    pair_draw[pair_id[first_row]] = draw[first_row]
    is_target = pair_draw[pair_id] >= fold_in
    split = np.where(r == TRAIN, TRAIN, np.where(is_target, r, r + 2)).astype(np.int8)
    return Interactions(f.assign(split=split), inter.n_users, inter.n_items)


VAL_FOLD_IN, TEST_FOLD_IN = 3, 4


# ---------------------------------------------------------------------------------------------------
# The prepared dataset: catalog + split interactions, cached as Parquet
# ---------------------------------------------------------------------------------------------------
@dataclass
class PreparedDataset:
    catalog: Catalog
    interactions: Interactions
    meta: dict

    @property
    def train(self) -> Interactions:
        return self.interactions.select(TRAIN)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.catalog.save(folder)
        self.interactions.frame.to_parquet(folder / "events.parquet", index=False)
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "PreparedDataset":
        folder = Path(folder)
        if not (folder / "meta.json").exists():
            raise DataError(f"{folder} is not a prepared dataset; run `recsys data prepare` first")
        catalog = Catalog.load(folder)
        if (folder / "events").is_dir():  # the Ray Data path's shards: whole users each, in any order
            frame = pd.read_parquet(folder / "events")
            frame = (frame.sort_values(["uidx", "urank"], kind="stable").drop(columns="urank")
                     .reset_index(drop=True))
        else:
            frame = pd.read_parquet(folder / "events.parquet")
        return cls(catalog, Interactions(frame, catalog.n_users, catalog.n_items),
                   json.loads((folder / "meta.json").read_text()))


PREPARE_VERSION = 2
"""Bumped whenever preparation changes what it writes, so no cache of an older preparation is reused
(2: rows keep their own event type, funnel steps kept, repeats never held out)."""


def _inputs(path) -> list[Path]:
    """One path, or several (base log + served events): always a list, in the order given."""
    return [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]


def source_fingerprint(fmt: str, path: str | Path | list, **options) -> str:
    """Changes when the input files or the preparation options change (size + mtime, not content,
    so a 5 GB log is not re-read just to decide that nothing changed). Several inputs: each in turn,
    so the same inputs give the same prepared data (one input hashes as it always did)."""
    h = hashlib.sha256(json.dumps([fmt, PREPARE_VERSION, sorted(options.items())], default=str).encode())
    for i, path in enumerate(_inputs(path)):
        if i:
            h.update(f"|input {i}|".encode())
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


ENGINES = ("auto", "pandas", "ray")
RAY_ENGINE_BYTES = 2 << 30
"""`engine="auto"` prepares inputs of at least this many bytes on Ray Data (env RECSYS_RAY_PREPARE_BYTES).
Measured on a 2-core machine, synthetic REES46 logs (`python -m bench.scale --prepare-only`): 10^7 events
(1.25 GB CSV) take 53 s / 2.2 GB on pandas and 48 s / 2.6 GB (PSS of all Ray processes, ~1 GB of it Ray's
own) on Ray Data; 10^6 take 5.5 s / 0.4 GB against 16 s / 1.6 GB. pandas' memory grows with the events
(~0.2 GB per 10^6), Ray's driver only with users and items, so past ~2 GB of CSV (~1.5 x 10^7 events) the
pandas path would leave a 4 GB budget."""


def choose_engine(engine: str, fmt: str, path, load_kw: dict | None = None) -> str:
    """pandas or ray. `auto`: Ray Data for one REES46 input (file or folder of shards) of at least
    RAY_ENGINE_BYTES (or $RECSYS_RAY_PREPARE_BYTES), else pandas."""
    if engine not in ENGINES:
        raise DataError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    from recdata.rayread import RAY_FORMATS, input_bytes

    if fmt not in RAY_FORMATS or isinstance(path, (list, tuple)) and len(path) != 1 or load_kw:
        return "pandas"
    one = path[0] if isinstance(path, (list, tuple)) else path
    threshold = int(os.environ.get("RECSYS_RAY_PREPARE_BYTES", RAY_ENGINE_BYTES))
    return "ray" if input_bytes(one) >= threshold else "pandas"


def prepare_folder(
    fmt: str, path: str | Path | list, cache_dir: str | Path, split: str = "loo", collapse_repeats: bool = True,
    engine: str = "auto", **load_kw
) -> tuple[Path, dict]:
    """Make sure `cache_dir/<fingerprint>/` holds the prepared data; (that folder, its meta). The Ray
    Data path never brings the events into this process (`recdata.rayprep`)."""
    key = source_fingerprint(fmt, path, split=split, collapse_repeats=collapse_repeats, **load_kw)
    folder = Path(cache_dir) / key
    if not (folder / "meta.json").exists():
        if choose_engine(engine, fmt, path, load_kw) == "ray":
            from recdata.rayprep import prepare_ray

            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            one = path[0] if isinstance(path, (list, tuple)) and len(path) == 1 else path
            prepare_ray(fmt, one, folder, key, split=split, collapse_repeats=collapse_repeats, **load_kw)
        else:
            prepare(fmt, path, cache_dir, split=split, collapse_repeats=collapse_repeats, engine="pandas", **load_kw)
    return folder, json.loads((folder / "meta.json").read_text())


def prepare(
    fmt: str, path: str | Path | list, cache_dir: str | Path | None = None, split: str = "loo",
    collapse_repeats: bool = True, engine: str = "auto", **load_kw
) -> PreparedDataset:
    """Load, encode and split; with `cache_dir`, reuse `cache_dir/<fingerprint>/` when it exists so
    every trainer (and every node reading shared storage) uses the same prepared files. `path` may be
    a list (base log + served events, recdata.eventlog.load_many: duplicates across inputs dropped).
    `engine`: pandas (in this process), ray (Ray Data, `recdata.rayprep`; same data) or auto (ray for
    large REES46 inputs, see `choose_engine`)."""
    key = source_fingerprint(fmt, path, split=split, collapse_repeats=collapse_repeats, **load_kw)
    if cache_dir is not None:
        cached = Path(cache_dir) / key
        if (cached / "meta.json").exists():
            return PreparedDataset.load(cached)
    if choose_engine(engine, fmt, path, load_kw) == "ray":
        if cache_dir is None:  # the Ray path writes shards: a private folder, read back, then removed
            import shutil
            import tempfile

            tmp = Path(tempfile.mkdtemp(prefix="recsys-prepare-"))
            try:
                return PreparedDataset.load(prepare_folder(fmt, path, tmp, split, collapse_repeats, "ray",
                                                           **load_kw)[0])
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return PreparedDataset.load(prepare_folder(fmt, path, cache_dir, split, collapse_repeats, "ray", **load_kw)[0])
    inputs = _inputs(path)
    log = load(fmt, inputs[0], **load_kw) if len(inputs) == 1 else load_many(fmt, inputs, **load_kw)
    catalog, inter = encode(log, collapse_repeats=collapse_repeats)
    if split == "loo":
        inter = leave_one_out(inter)
    elif split == "users":
        inter = user_holdout(inter)
    else:
        raise DataError(f"unknown split {split!r}; use loo or users")
    codes = inter.frame["split"].to_numpy()
    shown = str(path) if len(inputs) == 1 else [str(p) for p in inputs]
    meta = {"format": fmt, "path": shown, "split": split, "fingerprint": key, **log.stats(),
            "collapse_repeats": collapse_repeats, "interactions_encoded": len(inter),
            "repeat_rows": int(inter.frame["repeat"].sum()),
            "rows_after_test": int((codes == AFTER_TEST).sum()),
            "bad_row_report": log.bad_rows.to_dict(), "engine": "pandas"}
    ds = PreparedDataset(catalog, inter, meta)
    if cache_dir is not None:
        ds.save(Path(cache_dir) / key)
    return ds
