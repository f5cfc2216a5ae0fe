"""Catalog (id maps both ways + item text), encoded interactions, splits, and the Parquet cache.

Engines work on dense indices: users 0..U-1, items 0..I-1. The catalog translates both ways and is
saved with every model artifact, so a served model answers in the ids of the data it was trained on.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

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
    """Dense-index the log. With `collapse_repeats` (default), each (user, item) pair becomes one
    interaction at its first time, carrying its strongest event and that event's weight: shoppers
    view the same product many times and then cart/buy it, and without collapsing, a leave-one-out
    target would usually be an item already in the history -- which full ranking filters out."""
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
    if collapse_repeats and frame.duplicated(["uidx", "iidx"]).any():
        g = frame.groupby(["uidx", "iidx"], sort=False)
        first = frame.loc[~frame.duplicated(["uidx", "iidx"])].copy()
        strongest = g["event"].max().reindex(pd.MultiIndex.from_frame(first[["uidx", "iidx"]]))
        first["event"] = strongest.to_numpy()
        wmax = g["weight"].max().reindex(pd.MultiIndex.from_frame(first[["uidx", "iidx"]]))
        first["weight"] = wmax.to_numpy()
        frame = first.reset_index(drop=True)
    return catalog, Interactions(frame, catalog.n_users, catalog.n_items)


def leave_one_out(inter: Interactions, min_len: int = 3) -> Interactions:
    """Mark each user's last event test and second-to-last validation (by time). Users with fewer
    than `min_len` events stay wholly in train: they have too little to hold anything out."""
    f = inter.frame
    uidx = f["uidx"].to_numpy()
    counts = np.bincount(uidx, minlength=inter.n_users)
    pos_from_end = counts[uidx] - 1 - f.groupby("uidx").cumcount().to_numpy()
    split = np.full(len(f), TRAIN, np.int8)
    long_enough = counts[uidx] >= min_len
    split[long_enough & (pos_from_end == 0)] = TEST
    split[long_enough & (pos_from_end == 1)] = VAL
    return Interactions(f.assign(split=split), inter.n_users, inter.n_items)


def user_holdout(
    inter: Interactions, n_heldout: int | float = 0.1, fold_in: float = 0.8, seed: int = 0
) -> Interactions:
    """Strong generalization (Liang et al. 2018, Mult-VAE): held-out users are absent from training;
    for each, a random `fold_in` share of their events is the input and the rest the target.
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
    is_target = rng.random(len(f)) >= fold_in
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
        frame = pd.read_parquet(folder / "events.parquet")
        return cls(catalog, Interactions(frame, catalog.n_users, catalog.n_items),
                   json.loads((folder / "meta.json").read_text()))


def source_fingerprint(fmt: str, path: str | Path, **options) -> str:
    """Changes when the input files or the preparation options change (size + mtime, not content,
    so a 5 GB log is not re-read just to decide that nothing changed)."""
    path = Path(path)
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    h = hashlib.sha256(json.dumps([fmt, sorted(options.items())], default=str).encode())
    for f in files:
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def prepare(
    fmt: str, path: str | Path, cache_dir: str | Path | None = None, split: str = "loo",
    collapse_repeats: bool = True, **load_kw
) -> PreparedDataset:
    """Load, encode and split; with `cache_dir`, reuse `cache_dir/<fingerprint>/` when it exists so
    every trainer (and every node reading shared storage) uses the same prepared files."""
    from recdata.loaders import load

    key = source_fingerprint(fmt, path, split=split, collapse_repeats=collapse_repeats, **load_kw)
    if cache_dir is not None:
        cached = Path(cache_dir) / key
        if (cached / "meta.json").exists():
            return PreparedDataset.load(cached)
    log = load(fmt, path, **load_kw)
    catalog, inter = encode(log, collapse_repeats=collapse_repeats)
    if split == "loo":
        inter = leave_one_out(inter)
    elif split == "users":
        inter = user_holdout(inter)
    else:
        raise DataError(f"unknown split {split!r}; use loo or users")
    meta = {"format": fmt, "path": str(path), "split": split, "fingerprint": key, **log.stats(),
            "collapse_repeats": collapse_repeats, "interactions_encoded": len(inter),
            "bad_row_report": log.bad_rows.to_dict()}
    ds = PreparedDataset(catalog, inter, meta)
    if cache_dir is not None:
        ds.save(Path(cache_dir) / key)
    return ds
