"""ANN retrieval benchmark: recall@10 of the FAISS HNSW path (models/ann.py) against exact top-k, and
the latency of one query on each path, at catalogs of 10^3, 10^4 and 10^5 items.

    python -m bench.ann [--sizes 1000,10000,100000] [--queries 200] [--engines sequence,similarity,discovery]
    python -m bench.ann --registry HOME --dataset PREPARED_DIR [--queries 400]     # trained engines

With --registry, the vectors are the trained engines' own (the serving roles'
`models:/discovery|content|sasrec@champion` of the RECSYS_HOME
HOME, e.g. a `bench.scale` rung's `home/`, whose 10^7-event rung has 10^5 items) and the queries the
query vectors of test users' real histories from the prepared dataset: plain; the history's items
excluded (as served: seen filtered); the category of the last history item; prices up to the catalog's
median. Keys: `trained_<role>_<items>_recall@10`, `..._p50_ms`, ...

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
    return _measure(ItemIndex(V, bias, AnnConfig(min_items=n + 1)), ItemIndex(V, bias, cfg),  # cfg: min_items 1
                    Q, exclude, masks, threads)


def _measure(exact: ItemIndex, ann: ItemIndex, Q, exclude, masks, threads: int) -> dict:
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


def trained_requests(engine, ds, n_queries: int, rng: np.random.Generator):
    """(queries, excludes, masks) from `n_queries` sampled test users of the prepared dataset `ds`."""
    from recdata.evaluation import evaluation_batches, target_users

    users = target_users(ds, "test", n_queries, seed=int(rng.integers(2**31)))
    batch, _ = next(evaluation_batches(ds, "test", batch_size=len(users), users=users))
    Q = engine.query_vectors(batch).astype(np.float32)
    items = engine.catalog.items
    median_price = float(np.nanmedian(items["price"])) if "price" in items else None
    exclude, masks = [], []
    for q, hist in enumerate(batch.items):
        kind = q % 4
        exclude.append(np.unique(hist) if kind == 1 else np.empty(0, np.int64))
        category = items["category"].iloc[hist[-1]] if kind == 2 and "category" in items and len(hist) else None
        masks.append(engine.allowed(category=category) if kind == 2 and isinstance(category, str)
                     else engine.allowed(max_price=median_price) if kind == 3 and median_price is not None else None)
    return Q, exclude, masks


def run_trained(engine, vectors, ds, n_queries: int, cfg: AnnConfig, seed: int, threads: int) -> dict:
    """`run` on a trained engine's item vectors (and bias) and its real query vectors."""
    V, bias = vectors
    Q, exclude, masks = trained_requests(engine, ds, n_queries, np.random.default_rng(seed))
    return _measure(ItemIndex(V, bias, AnnConfig(min_items=len(V) + 1)), ItemIndex(V, bias, cfg),
                    Q, exclude, masks, threads)


def main_trained(a, cfg: AnnConfig) -> dict:
    os.environ["RECSYS_HOME"] = a.registry      # before reccore reads it: that home's registry
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from models.base import Engine
    from reccore import tracking
    from recdata.dataset import PreparedDataset

    ds = PreparedDataset.load(a.dataset)
    print(f"trained engines of {a.registry}; HNSW ({cfg.metric}) M={cfg.hnsw_m} efConstruction={cfg.ef_construction} "
          f"efSearch={cfg.ef_search}; {a.queries} test users' histories as queries, k={K}, {a.threads} thread(s)")
    print(f"{'role':<11}{'items':>8}{'dim':>5}{'recall@10':>10}{'plain':>7}{'seen':>7}{'categ':>7}{'price':>7}"
          f"{'ann p50':>9}{'ann p99':>9}{'exact p50':>10}{'exact p99':>10}{'build s':>9}")
    out: dict = {}
    for role, name in (("discovery", "discovery"), ("similarity", "content"), ("sequence", "sasrec")):
        if tracking.model_version(name, "champion") is None:
            print(f"{role:<11} models:/{name}@champion is not registered in {a.registry}: skipped", flush=True)
            continue
        engine = Engine.load(tracking.resolve_artifact(f"models:/{name}@champion"))
        vectors = engine.item_vectors()
        if vectors is None:
            print(f"{role:<11} {engine.name} has no item vectors (no index): skipped", flush=True)
            continue
        r = run_trained(engine, vectors, ds, a.queries, cfg, a.seed, a.threads)
        n, dim = engine.n_items, vectors[0].shape[1]
        print(f"{role:<11}{n:>8}{dim:>5}{r['recall']:>10.4f}{r['recall_plain']:>7.3f}{r['recall_seen']:>7.3f}"
              f"{r['recall_category']:>7.3f}{r['recall_price']:>7.3f}{r['ann_p50']:>9.3f}{r['ann_p99']:>9.3f}"
              f"{r['exact_p50']:>10.3f}{r['exact_p99']:>10.3f}{r['build_s']:>9.1f}", flush=True)
        out.update({f"trained_{role}_{n}_recall@10": r["recall"], f"trained_{role}_{n}_p50_ms": r["ann_p50"],
                    f"trained_{role}_{n}_p99_ms": r["ann_p99"], f"trained_{role}_{n}_build_s": r["build_s"],
                    f"trained_exact_{role}_{n}_p50_ms": r["exact_p50"],
                    f"trained_exact_{role}_{n}_p99_ms": r["exact_p99"]})
    out["load_average"] = os.getloadavg()[0]
    out = {k: round(v, 4) for k, v in out.items()}
    print(json.dumps(out))
    return out


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
    p.add_argument("--registry", help="a RECSYS_HOME whose registered engines to measure (trained vectors)")
    p.add_argument("--dataset", help="with --registry: the prepared dataset folder the test histories come from")
    a = p.parse_args(argv)
    cfg = AnnConfig(min_items=1, hnsw_m=a.hnsw_m, ef_construction=a.ef_construction, ef_search=a.ef_search,
                    metric=a.metric)
    if a.registry:
        if not a.dataset:
            p.error("--registry needs --dataset (the prepared data folder the engines were trained on)")
        return main_trained(a, cfg)
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
