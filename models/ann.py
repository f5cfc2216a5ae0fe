"""Top-k retrieval over item vectors: exact below a catalog size, a FAISS HNSW index above it.

Three engines score a query as an inner product with one vector per item:
    discovery (VAE-CF)  h [hidden] . W_i + b_i   (the decoder's last layer is linear)
    similarity          profile . e_i            (unit vectors: cosine)
    sequence (SASRec)   h_last . E_i             (the tied item embedding table)
so top-k is maximum inner product search (MIPS). The bias is folded in by augmenting the vectors,
q' = [q, 1] and v'_i = [v_i, b_i], so q'.v'_i is the engine's score exactly. HNSW (Malkov & Yashunin,
2018) then searches a graph built on inner products directly (ip-NSW: Morozov & Babenko, "Non-metric
similarity graphs for maximum inner product search", NeurIPS 2018). `metric: l2` instead builds it on
the Euclidean transform of Bachrach et al. (RecSys 2014: v''_i = [v'_i, sqrt(M^2 - |v'_i|^2)],
q'' = [q', 0], so L2-nearest = top inner product); on 10^5 64-d vectors with varying norms it reached
recall@10 ~0.93 where the inner-product graph reached ~0.999 at the same efSearch (`python -m bench.ann
--engines sequence --sizes 100000 --metric l2`), so `ip` is the default.

Seen items and business filters (category, price) are applied after the search, so the index
over-fetches: (k + excluded) * overfetch / (fraction of items the filter allows) candidates, rescored
exactly, filtered, cut to k. A filter that leaves few items (`flat_cutoff`) is answered by an exact
product over just those items, and a row needing more than `max_fetch` candidates, or left with too
few after filtering, by the exact product over the catalog: the ANN path never returns fewer items
than exist for lack of candidates.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recdata.metrics import NEG_INF, top_k

INDEX_FILE = "ann_index.faiss"


@dataclass
class AnnConfig:
    min_items: int = 50_000
    """Catalogs with at least this many items are searched through the HNSW index; smaller ones by an
    exact matrix product (at 5e4 x 64 that is ~2-5 ms per query on 2 cores, already cheap enough)."""
    hnsw_m: int = 32
    """HNSW links per node (FAISS `M`): more = better recall, more memory (~2*M*4 bytes per item)."""
    ef_construction: int = 200
    """Candidate list while building: the graph quality. 40 (FAISS' default) gave recall@10 ~0.8 on
    clustered 64-d vectors where 200 gives ~0.95+ at the same search cost (bench/ann.py)."""
    ef_search: int = 256
    """Candidate list per query (raised to the number of candidates fetched when that is larger):
    the recall / latency knob at query time."""
    overfetch: float = 2.0
    """Fetch this times (k + excluded items) candidates, divided by the fraction of items a filter lets
    through, so enough survive seen-item and business filtering."""
    max_fetch: int = 1024
    """Rows that would need more candidates than this are answered exactly: deep in the ranking HNSW's
    recall drops, and the exact product is then no dearer than the search."""
    flat_cutoff: int = 20_000
    """A filter leaving at most this many items is answered by an exact product over just those items
    (~1-4 ms at 2e4 x 64..600 here): its top-k lies deep in the unfiltered ranking, where HNSW's
    recall drops (over-fetching 400 of 1,000 items kept recall@10 at ~0.55 for a 5 % filter)."""
    metric: str = "ip"
    """Graph the HNSW index is built on: `ip` (inner products directly) or `l2` (the Euclidean transform)."""
    threads: int = 0
    """FAISS OpenMP threads for build and search; 0 keeps FAISS' default (all cores)."""
    save_index: bool = True
    """Write the built index into the engine artifact (`ann_index.faiss`) so a replica loads it
    instead of rebuilding (10^5 x 384 builds in ~1 min on 2 cores)."""

    def __post_init__(self) -> None:
        if self.min_items < 1 or self.hnsw_m < 2 or self.ef_construction < 1 or self.ef_search < 1:
            raise ValueError("ann: min_items >= 1, hnsw_m >= 2, ef_construction >= 1 and ef_search >= 1 are needed")
        if self.metric not in ("ip", "l2"):
            raise ValueError(f"ann: metric={self.metric!r}; use 'ip' (inner-product graph) or 'l2' (Euclidean)")
        if self.overfetch < 1.0 or self.max_fetch < 1 or self.flat_cutoff < 0:
            raise ValueError(f"ann: overfetch={self.overfetch} must be >= 1, max_fetch >= 1 and flat_cutoff >= 0")


def ann_config(value) -> AnnConfig:
    """An engine config's `ann` field: an AnnConfig, or the dict a YAML file / saved manifest holds."""
    from reccore.config import config_from_dict

    if isinstance(value, AnnConfig):
        return value
    return config_from_dict(AnnConfig, value or {}, "ann")


class ItemIndex:
    """Item vectors [N, d] (+ optional bias [N]) answering `search(queries, k, exclude, allowed)`:
    exact for N < config.min_items, HNSW above. Scores returned are always the exact inner products."""

    def __init__(self, vectors: np.ndarray, bias: np.ndarray | None = None, config: AnnConfig | None = None,
                 saved: str | Path | None = None):
        self.config = config or AnnConfig()
        self.vectors = np.ascontiguousarray(vectors, np.float32)                  # [N, d]
        self.bias = None if bias is None else np.asarray(bias, np.float32)       # [N]
        self.n_items = len(self.vectors)
        self.is_ann = self.n_items >= self.config.min_items
        self.index, self.build_seconds, self.loaded = None, 0.0, False
        self.rows = {"ann": 0, "exact": 0, "fallback": 0}  # how rows were answered (tests, benchmarks)
        self.members = None  # items of each distinct vector, when the catalog repeats vectors (see _group)
        if self.is_ann:
            self._group()
            self._faiss_threads()
            if saved is not None and Path(saved).exists() and self._matches(Path(saved)):
                import faiss

                self.index, self.loaded = faiss.read_index(str(saved)), True
                self.index.hnsw.efSearch = self.config.ef_search
            else:
                self._build()

    # -- building ---------------------------------------------------------------------------------
    def _augmented(self) -> np.ndarray:
        """[N, d(+1)] item side of the inner product, the bias as one more coordinate."""
        if self.bias is None:
            return self.vectors
        return np.hstack([self.vectors, self.bias[:, None]])

    def _group(self) -> None:
        """Items with identical vectors (product variants: the same title, brand and category give the
        same text embedding) become one node of the graph. HNSW degrades on duplicates -- a node's M links
        fill up with its own copies and the graph falls apart into islands: on a 10^5-item catalog of
        21k distinct content vectors, recall@10 was 0.70 (`python -m bench.ann --registry ...`). The index
        holds one vector per group; a search expands the groups it finds back into their items."""
        v = self._augmented()
        _, first, inverse = np.unique(v, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if len(first) == self.n_items:
            return                                                               # all distinct: identity
        order = np.argsort(first, kind="stable")                                 # groups in first-item order
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        group = rank[inverse]                                                    # [N] group of each item
        self.representatives = np.sort(first)                                   # [G] first item of each group
        self.members = np.argsort(group, kind="stable")                          # items, grouped
        self.group_size = np.bincount(group, minlength=len(first))
        self.group_start = np.concatenate([[0], np.cumsum(self.group_size)[:-1]])

    def _indexed(self) -> np.ndarray:
        """The vectors the graph holds: one per group of identical items."""
        v = self._augmented()
        return v if self.members is None else v[self.representatives]

    def _expand(self, groups: np.ndarray) -> np.ndarray:
        """Graph node ids -> the items of those groups (identity when every vector is distinct)."""
        if self.members is None:
            return groups
        sizes, starts = self.group_size[groups], self.group_start[groups]
        offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return self.members[np.repeat(starts, sizes) + offsets]

    def _build(self) -> None:
        import faiss

        t0 = time.perf_counter()
        v = self._indexed()                                                      # [G, d(+1)]
        if self.config.metric == "ip":
            index = faiss.IndexHNSWFlat(v.shape[1], self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            sq = np.einsum("nd,nd->n", v, v, dtype=np.float64)                   # [N] squared norms
            extra = np.sqrt(np.maximum(sq.max() - sq, 0.0)).astype(np.float32)   # every item at norm M
            v = np.hstack([v, extra[:, None]])
            index = faiss.IndexHNSWFlat(v.shape[1], self.config.hnsw_m)          # L2 on the transformed vectors
        index.hnsw.efConstruction = self.config.ef_construction
        index.hnsw.efSearch = self.config.ef_search
        index.add(np.ascontiguousarray(v))
        self.index, self.build_seconds = index, time.perf_counter() - t0

    def _faiss_threads(self) -> None:
        if self.config.threads:
            import faiss

            faiss.omp_set_num_threads(self.config.threads)

    def fingerprint(self) -> dict:
        """What a saved index must match: catalog size, dimension, HNSW parameters, a hash of the vectors."""
        h = hashlib.sha1(self.vectors.tobytes())
        if self.bias is not None:
            h.update(self.bias.tobytes())
        return {"n_items": self.n_items, "dim": int(self.vectors.shape[1]), "bias": self.bias is not None,
                "metric": self.config.metric, "hnsw_m": self.config.hnsw_m,
                "ef_construction": self.config.ef_construction, "sha1": h.hexdigest(),
                "nodes": self.n_items if self.members is None else len(self.representatives)}

    def save(self, path: str | Path) -> Path | None:
        """Write the HNSW index (and its fingerprint beside it); nothing for an exact index."""
        if self.index is None:
            return None
        import faiss

        path = Path(path)
        faiss.write_index(self.index, str(path))
        path.with_suffix(".json").write_text(json.dumps(self.fingerprint(), indent=1))
        return path

    def _matches(self, path: Path) -> bool:
        meta = path.with_suffix(".json")
        return meta.exists() and json.loads(meta.read_text()) == self.fingerprint()

    # -- searching --------------------------------------------------------------------------------
    def scores(self, queries: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Exact inner products [B, N] (or [B, len(items)] for a subset of items)."""
        v = self.vectors if items is None else self.vectors[items]
        s = np.asarray(queries, np.float32) @ v.T
        if self.bias is not None:
            s += self.bias if items is None else self.bias[items]
        return s

    def search(self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None,
               allowed: np.ndarray | list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: (item indices [B, k], float64 scores [B, k]); -1 / -inf where fewer items
        qualify. `exclude`: per-row item indices to leave out (seen items, explicit excludes);
        `allowed`: a bool [N] mask for every row, or one mask (or None) per row."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        B = len(queries)
        exclude = [_valid(e, self.n_items) for e in exclude] if exclude is not None else [np.empty(0, np.int64)] * B
        masks = [None if m is None else np.asarray(m, bool) for m in (allowed if isinstance(allowed, list)
                                                                       else [allowed] * B)]
        out = np.full((B, k), -1, np.int64), np.full((B, k), NEG_INF)
        routes = [self._route(k, exclude[b], masks[b]) for b in range(B)]
        ann_rows = [b for b in range(B) if routes[b] > 0]
        exact_rows = [b for b in range(B) if routes[b] == 0]
        if ann_rows:
            cand = self._candidates(queries[ann_rows], max(routes[b] for b in ann_rows))  # [R, fetch]
            for r, b in enumerate(ann_rows):
                c = self._expand(cand[r][cand[r] >= 0])
                c = c[_eligible(c, exclude[b], masks[b])]
                if min(len(c), k) < min(k, self._n_eligible(exclude[b], masks[b])):
                    exact_rows.append(b)                                         # too few survived: exact
                    self.rows["fallback"] += 1
                    continue
                self._put(out, b, queries[b], c, k)
                self.rows["ann"] += 1
        for b in (b for b in range(B) if routes[b] == -1):                       # a selective filter
            self._put(out, b, queries[b], np.flatnonzero(_eligible(np.arange(self.n_items), exclude[b], masks[b])), k)
            self.rows["exact"] += 1
        if exact_rows:
            self._exact(out, sorted(exact_rows), queries, k, exclude, masks)
        return out

    def _route(self, k: int, exclude: np.ndarray, mask: np.ndarray | None) -> int:
        """How to answer one row: the number of HNSW candidates to fetch (> 0); -1 = exact over the few
        items a selective filter allows; 0 = exact over the whole catalog."""
        if not self.is_ann:
            return 0
        n_allowed = self.n_items if mask is None else int(np.count_nonzero(mask))
        if mask is not None and n_allowed <= self.config.flat_cutoff:
            return -1
        need = int(np.ceil((k + len(exclude)) * self.config.overfetch * self.n_items / max(n_allowed, 1)))
        nodes = self.n_items if self.members is None else len(self.representatives)
        return need if need <= self.config.max_fetch and need < nodes else 0

    def _put(self, out, b: int, query: np.ndarray, items: np.ndarray, k: int) -> None:
        """Row b of `out` = the k best of `items`, scored exactly, ties by item index."""
        s = self.scores(query[None, :], items)[0].astype(np.float64)
        order = np.lexsort((items, -s))[:k]
        out[0][b, :len(order)], out[1][b, :len(order)] = items[order], s[order]

    def _exact(self, out, rows: list[int], queries, k: int, exclude, masks) -> None:
        """Rows answered by the full product and top-k, as engines below `min_items` do."""
        self.rows["exact"] += len(rows) if self.is_ann else 0
        s = self.scores(queries[rows]).astype(np.float64)                       # [R, N]
        for r, b in enumerate(rows):
            s[r, exclude[b]] = NEG_INF
            if masks[b] is not None:
                s[r, ~masks[b]] = NEG_INF
        idx = top_k(s, k)
        out[0][rows, :idx.shape[1]] = idx
        out[1][rows, :idx.shape[1]] = np.where(idx >= 0, np.take_along_axis(s, np.maximum(idx, 0), 1), NEG_INF)

    def _candidates(self, queries: np.ndarray, fetch: int) -> np.ndarray:
        """HNSW neighbours [B, fetch] (-1 pads) of the augmented queries: [q, 1 if bias] (+ [0] for l2)."""
        extra = [np.ones((len(queries), 1), np.float32)] if self.bias is not None else []
        if self.config.metric == "l2":
            extra.append(np.zeros((len(queries), 1), np.float32))
        q = np.hstack([queries, *extra])
        self.index.hnsw.efSearch = max(self.config.ef_search, fetch)
        _, idx = self.index.search(np.ascontiguousarray(q), fetch)
        return idx

    def _n_eligible(self, exclude: np.ndarray, mask: np.ndarray | None) -> int:
        if mask is None:
            return self.n_items - len(exclude)
        mask = np.asarray(mask, bool)
        return int(np.count_nonzero(mask)) - int(np.count_nonzero(mask[exclude]))


def _valid(items, n: int) -> np.ndarray:
    """Unique item indices inside the catalog (histories may carry -1 for unknown ids)."""
    items = np.unique(np.asarray(items, np.int64))
    return items[(items >= 0) & (items < n)]


def _eligible(cand: np.ndarray, exclude: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    keep = ~np.isin(cand, exclude) if len(exclude) else np.ones(len(cand), bool)
    if mask is not None:
        keep &= np.asarray(mask, bool)[cand]
    return keep
