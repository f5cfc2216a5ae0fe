"""Similarity engine on ML-1M: genre agreement of similar items, embedding throughput, and the
user-profile recommender beside popularity (leave-one-out, full ranking), overall and on the cold
tail (test items with < 20 training interactions).

    PYTHONPATH=. nice -n 10 python -m bench.content_ml1m [--path ../shared/data/ml-1m] [--threads 1]

genre_precision@10 (the headline): for every movie, the share of its 10 nearest movies (itself left
out) that share at least one genre with it, with the *titles alone* embedded -- what the encoder
knows. random_genre_precision@10 is the same share for 10 movies drawn at random (computed exactly:
the share of all other movies sharing a genre). `genre_precision@10_genres_in_text` embeds the
engine's own item text, which contains the genres: circular as a test of the encoder (the answer is
in the input), reported only as a labelled extra. Prints tables; the LAST line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from models.content import ContentConfig, ContentEngine, TextEncoder
from models.popularity import PopularityEngine
from recdata.dataset import TEST, Interactions, PreparedDataset, prepare
from recdata.evaluation import evaluate, format_table
from recdata.metrics import top_k


def genre_sets(items) -> list[set[str]]:
    return [set(str(g).split("|")) if isinstance(g, str) and g else set() for g in items["genres"]]


def genre_precision(emb: np.ndarray, genres: list[set[str]], k: int = 10) -> float:
    """Mean share of each item's k nearest neighbours (cosine, itself excluded) sharing a genre."""
    hits = []
    for lo in range(0, len(emb), 512):
        s = (emb[lo:lo + 512] @ emb.T).astype(np.float64)         # [b, n_items]
        s[np.arange(s.shape[0]), np.arange(lo, lo + s.shape[0])] = -np.inf
        for row, nn in enumerate(top_k(s, k)):
            g = genres[lo + row]
            if g:
                hits.append(np.mean([bool(g & genres[j]) for j in nn]))
    return float(np.mean(hits))


def random_genre_precision(genres: list[set[str]]) -> float:
    """Expected precision of k random other items = share of other items sharing a genre."""
    names = sorted(set().union(*genres))
    onehot = np.array([[n in g for n in names] for g in genres], np.float32)   # [n_items, n_genres]
    share = (onehot @ onehot.T) > 0                                             # [n, n]
    np.fill_diagonal(share, False)
    has = onehot.sum(1) > 0
    return float((share[has].sum(1) / (len(genres) - 1)).mean())


def cold_tail(ds: PreparedDataset, max_train: int = 20) -> PreparedDataset:
    """The same dataset with only the test targets whose item has < max_train train interactions
    (other users' test rows get a code no protocol reads, so they drop out of the test)."""
    f = ds.interactions.frame
    counts = ds.train.item_counts()
    warm_test = (f["split"].to_numpy() == TEST) & (counts[f["iidx"].to_numpy()] >= max_train)
    split = np.where(warm_test, 9, f["split"].to_numpy()).astype(np.int8)
    inter = Interactions(f.assign(split=split), ds.interactions.n_users, ds.interactions.n_items)
    return PreparedDataset(ds.catalog, inter, ds.meta)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--path", default=str(Path("..") / "shared" / "data" / "ml-1m"),
                    help="the ML-1M folder (sasrec format with titles and genres)")
    ap.add_argument("--model-path", default=None, help="local HF model folder (default all-MiniLM-L6-v2)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--cache", default=os.path.join(os.environ.get("RECSYS_HOME", ".recsys"), "prepared"))
    args = ap.parse_args(argv)
    if not Path(args.path).exists():
        raise SystemExit(f"{args.path} not found; pass --path pointing at the ml-1m folder")
    ds = prepare("sasrec", args.path, cache_dir=args.cache)
    n = ds.catalog.n_items
    print(f"ML-1M: {n} movies, {ds.catalog.n_users} users", flush=True)

    # Throughput: a cold cache (cache_dir=""), the model loaded before the clock starts.
    cfg = ContentConfig(model_path=args.model_path, batch_size=args.batch_size, cache_dir="", progress=True,
                        torch_threads=args.threads)
    engine = ContentEngine(cfg, ds.catalog)
    t = time.perf_counter()
    engine.encoder._load()
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    engine.fit(ds.train)
    embed_s = time.perf_counter() - t
    items_per_s = n / embed_s
    print(f"encoder load {load_s:.1f}s; embedded {n} item texts in {embed_s:.1f}s = {items_per_s:.0f} items/s")
    print("example texts:", engine.texts[:2])

    genres = genre_sets(ds.catalog.items)
    gp = genre_precision(engine.item_emb, genres)
    titles = TextEncoder(args.model_path, batch_size=args.batch_size, progress=False, threads=args.threads)
    titles._model, titles._tok = engine.encoder._model, engine.encoder._tok
    title_emb = titles.encode(ds.catalog.items["title"].fillna("").astype(str).tolist())
    gp_title = genre_precision(title_emb, genres)
    rnd = random_genre_precision(genres)
    print(f"genre precision@10 (titles only): {gp_title:.4f}; random {rnd:.4f}")
    print(f"  labelled extra, circular (the embedded text contains the genres): {gp:.4f}")

    pop = PopularityEngine(catalog=ds.catalog).fit(ds.train)
    rows = {"content": evaluate(engine, ds, "test"), "popularity": evaluate(pop, ds, "test")}
    tail = cold_tail(ds)
    cold = {"content": evaluate(engine, tail, "test"), "popularity": evaluate(pop, tail, "test")}
    keys = ["hr@10", "ndcg@10", "hr@20", "mrr", "coverage@10", "users"]
    print(format_table(rows, keys, "user profile -> items, leave-one-out test, full ranking, seen filtered"))
    print(format_table(cold, keys, "cold tail: test items with < 20 training interactions"))
    out = {
        "genre_precision@10": gp_title, "genre_precision@10_genres_in_text": gp, "random_genre_precision@10": rnd,
        "items_per_s": items_per_s, "encoder_load_s": load_s, "items": n,
        "hr@10": rows["content"]["hr@10"], "ndcg@10": rows["content"]["ndcg@10"],
        "pop_hr@10": rows["popularity"]["hr@10"], "pop_ndcg@10": rows["popularity"]["ndcg@10"],
        "cold_hr@10": cold["content"]["hr@10"], "cold_ndcg@10": cold["content"]["ndcg@10"],
        "pop_cold_hr@10": cold["popularity"]["hr@10"], "pop_cold_ndcg@10": cold["popularity"]["ndcg@10"],
        "cold_users": cold["content"]["users"], "model_key": engine.encoder.key,
    }
    out["load_avg_1m"] = os.getloadavg()[0]  # the machine is shared: context for the timings
    print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in out.items()}))
    return out


if __name__ == "__main__":
    main()
