"""ANN retrieval benchmark: recall@10 of the FAISS HNSW path (models/ann.py) against exact top-k, and
the latency of one query on each path, at catalogs of 10^3, 10^4 and 10^5 items.

    python -m bench.ann [--sizes 1000,10000,100000] [--queries 200] [--engines sequence,similarity,discovery]

Each engine's retrieval is measured in its own shape:
    sequence    SASRec      64-d item embeddings, inner product (norms vary)
    similarity  MiniLM      384-d unit vectors, cosine
    discovery   VAE-CF      600-d decoder rows + a bias per item (the bias folded into the vectors)
The vectors are synthetic and clustered, not a trained model's (no trained model here has 10^5 items):
n/100 clusters with Zipf-distributed sizes; centres and spread drawn along a decaying spectrum (coordinate
j has std (j+1)^-0.5, as trained embeddings concentrate their variance in few directions); item norms
log-normal (sequence) and biases normal (discovery), so popular items score higher. A query is the
recency-weighted mean of 5 items of one cluster plus noise -- a user profile, a hidden state near a taste.
Queries come in four kinds, a quarter each: plain; 50 seen items excluded; a category filter passing
~5 % of items (a category = the clusters with the same id mod 20: answered exactly over those items,
see `flat_cutoff`); a price-like filter passing a random half of the items (over-fetch, then filter).
Recall@10 is |ANN top-10 & exact top-10| / |exact top-10| with the same exclusions and filter;
latency is one query at a time through `ItemIndex.search` (exact: the matrix product + top-k that
engines below `ann.min_items` use), on one BLAS/OpenMP thread as the Serve replicas run (`--threads`).
The last line is one JSON object: `ann_<engine>_<n>_recall@10`, `..._p50_ms`, `..._p99_ms`,
`ann_<engine>_<n>_build_s`, `exact_<engine>_<n>_p50_ms`, ..., and over the engines `ann_<n>_recall@10`
(the worst), `ann_<n>_p50_ms` / `exact_<n>_p50_ms` (the slowest), and the load average at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import faiss
import numpy as np
from threadpoolctl import threadpool_limits  # installed with mlflow (scikit-learn)

from models.ann import AnnConfig, ItemIndex

ENGINES = {"sequence": (64, "norms"), "similarity": (384, "unit"), "discovery": (600, "bias")}
N_CATEGORIES = 20
K = 10


def clustered_items(n: int, dim: int, kind: str, rng: np.random.Generator):
    """(vectors [n, dim], bias [n] or None, cluster of each item [n]); see the module docstring."""
    n_clusters = max(10, n // 100)
    sizes = 1.0 / np.arange(1, n_clusters + 1)                          # Zipf cluster sizes
    cluster = rng.choice(n_clusters, n, p=sizes / sizes.sum())
    spectrum = (np.arange(dim) + 1.0) ** -0.5
    centres = rng.normal(size=(n_clusters, dim)) * spectrum
    V = (centres[cluster] + 0.5 * rng.normal(size=(n, dim)) * spectrum).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    bias = None
    if kind == "norms":
        V *= rng.lognormal(0.0, 0.3, n).astype(np.float32)[:, None]
    elif kind == "bias":
        bias = rng.normal(0.0, 0.3, n).astype(np.float32)
    return V, bias, cluster


def queries(V: np.ndarray, cluster: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, dim] user-like queries: a recency-weighted mean of 5 items of one cluster, plus noise."""
    out = np.empty((n, V.shape[1]), np.float32)
    w = 0.5 ** (np.arange(5)[::-1] / 2.0)
    for q in range(n):
        members = np.flatnonzero(cluster == cluster[rng.integers(len(cluster))])
        v = w @ V[rng.choice(members, 5)] + 0.05 * rng.normal(size=V.shape[1])
        out[q] = v / np.linalg.norm(v) * 3.0                              # a confident hidden state
    return out


def requests(V, cluster, n_queries, rng):
    """(queries, per-row excluded items, per-row filter masks or None): plain / seen / category / price."""
    Q = queries(V, cluster, n_queries, rng)
    exclude, masks = [], []
    category = cluster % N_CATEGORIES
    present = np.unique(category)
    for q in range(n_queries):
        kind = q % 4
        exclude.append(rng.choice(len(V), 50, replace=False) if kind == 1 else np.empty(0, np.int64))
        masks.append(category == rng.choice(present) if kind == 2 else rng.random(len(V)) < 0.5 if kind == 3
                     else None)
    return Q, exclude, masks


def timed(index: ItemIndex, Q, exclude, masks):
    """One query at a time: (indices [n, K], per-query milliseconds)."""
    idx, ms = np.empty((len(Q), K), np.int64), np.empty(len(Q))
    for q in range(len(Q)):
        t0 = time.perf_counter()
        idx[q] = index.search(Q[q:q + 1], K, [exclude[q]], [masks[q]])[0][0]
        ms[q] = 1000 * (time.perf_counter() - t0)
    return idx, ms


def run(engine: str, n: int, n_queries: int, cfg: AnnConfig, seed: int, threads: int) -> dict:
    rng = np.random.default_rng(seed)
    dim, kind = ENGINES[engine]
    V, bias, cluster = clustered_items(n, dim, kind, rng)
    Q, exclude, masks = requests(V, cluster, n_queries, rng)
    exact = ItemIndex(V, bias, AnnConfig(min_items=n + 1))
    ann = ItemIndex(V, bias, cfg)                                        # cfg.min_items forced to 1
    faiss.omp_set_num_threads(threads)                                    # queries as a replica runs them
    with threadpool_limits(limits=threads):
        timed(ann, Q[:5], exclude[:5], masks[:5])                         # warm-up (BLAS, OpenMP pools)
        ann.rows = dict.fromkeys(ann.rows, 0)
        e_idx, e_ms = timed(exact, Q, exclude, masks)
        a_idx, a_ms = timed(ann, Q, exclude, masks)
    faiss.omp_set_num_threads(os.cpu_count() or 1)                       # builds use every core
    recall = np.array([len(set(a[a >= 0]) & set(e[e >= 0])) / (e >= 0).sum() for a, e in zip(a_idx, e_idx)])
    return {"recall": float(recall.mean()), "recall_plain": float(recall[0::4].mean()),
            "recall_seen": float(recall[1::4].mean()), "recall_category": float(recall[2::4].mean()),
            "recall_price": float(recall[3::4].mean()),
            "ann_p50": float(np.percentile(a_ms, 50)), "ann_p99": float(np.percentile(a_ms, 99)),
            "exact_p50": float(np.percentile(e_ms, 50)), "exact_p99": float(np.percentile(e_ms, 99)),
            "build_s": ann.build_seconds, "fallback_rows": ann.rows["fallback"] + ann.rows["exact"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="catalog sizes, comma-separated")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"any of {list(ENGINES)}")
    p.add_argument("--queries", type=int, default=400, help="queries per catalog (a quarter of each kind)")
    p.add_argument("--ef-search", type=int, default=AnnConfig.ef_search)
    p.add_argument("--ef-construction", type=int, default=AnnConfig.ef_construction)
    p.add_argument("--hnsw-m", type=int, default=AnnConfig.hnsw_m)
    p.add_argument("--metric", default=AnnConfig.metric, choices=["ip", "l2"],
                   help="HNSW graph: inner products (ip) or the Euclidean transform (l2); see models/ann.py")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/OpenMP threads while querying; 1 = as a Serve replica runs (serve_app/config.yaml)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cfg = AnnConfig(min_items=1, hnsw_m=a.hnsw_m, ef_construction=a.ef_construction, ef_search=a.ef_search,
                    metric=a.metric)
    sizes = [int(s) for s in a.sizes.split(",")]
    engines = [e for e in a.engines.split(",") if e]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        p.error(f"unknown engine(s) {unknown}; choose from {list(ENGINES)}")
    print(f"HNSW ({cfg.metric}) M={cfg.hnsw_m} efConstruction={cfg.ef_construction} efSearch={cfg.ef_search}; "
          f"{a.queries} queries per catalog, k={K}, {a.threads} thread(s) per query, builds on every core; "
          "clustered synthetic vectors (see the docstring)")
    print(f"{'engine':<11}{'items':>8}{'recall@10':>10}{'plain':>7}{'seen':>7}{'categ':>7}{'price':>7}"
          f"{'ann p50':>9}{'ann p99':>9}{'exact p50':>10}{'exact p99':>10}{'build s':>9}{'exact rows':>11}")
    out: dict = {}
    for n in sizes:
        for engine in engines:
            r = run(engine, n, a.queries, cfg, a.seed, a.threads)
            print(f"{engine:<11}{n:>8}{r['recall']:>10.4f}{r['recall_plain']:>7.3f}{r['recall_seen']:>7.3f}"
                  f"{r['recall_category']:>7.3f}{r['recall_price']:>7.3f}{r['ann_p50']:>9.3f}{r['ann_p99']:>9.3f}{r['exact_p50']:>10.3f}"
                  f"{r['exact_p99']:>10.3f}{r['build_s']:>9.1f}{r['fallback_rows']:>11}", flush=True)
            out.update({f"ann_{engine}_{n}_recall@10": r["recall"], f"ann_{engine}_{n}_p50_ms": r["ann_p50"],
                        f"ann_{engine}_{n}_p99_ms": r["ann_p99"], f"ann_{engine}_{n}_build_s": r["build_s"],
                        f"exact_{engine}_{n}_p50_ms": r["exact_p50"], f"exact_{engine}_{n}_p99_ms": r["exact_p99"]})
        out[f"ann_{n}_recall@10"] = min(out[f"ann_{e}_{n}_recall@10"] for e in engines)
        for path in ("ann", "exact"):
            for q in ("p50", "p99"):
                out[f"{path}_{n}_{q}_ms"] = max(out[f"{path}_{e}_{n}_{q}_ms"] for e in engines)
    out["load_average"] = os.getloadavg()[0]  # the machine is shared: latencies move with its load
    out = {k: round(v, 4) for k, v in out.items()}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
