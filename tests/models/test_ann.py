"""ANN retrieval (models/ann.py): with the threshold forced low, the HNSW path returns the exact top-k
of each engine (discovery, similarity, sequence and its LiteRT artifact), never a seen or excluded
item, only items passing the business filters, and falls back to exact when a filter leaves too few."""
from __future__ import annotations

import numpy as np
import pytest

from models.ann import INDEX_FILE, AnnConfig, ItemIndex
from models.content import ContentConfig, ContentEngine
from models.sasrec import SasrecConfig, SasrecEngine
from models.sasrec.lite import SasrecTFLite
from models.vae import VAEConfig, VAEEngine
from recdata.dataset import PreparedDataset, encode, leave_one_out
from recdata.schema import HistoryBatch
from support import shop_log

FORCED = {"min_items": 1, "flat_cutoff": 0}  # every catalog and filter goes through HNSW


@pytest.fixture(scope="module")
def ds() -> PreparedDataset:
    catalog, inter = encode(shop_log())
    return PreparedDataset(catalog, leave_one_out(inter), {"split": "loo"})


def histories(ds, n=40) -> HistoryBatch:
    f = ds.train.frame.sort_values(["uidx", "ts"])
    groups = [g for _, g in f.groupby("uidx")][:n]
    return HistoryBatch([g["iidx"].to_numpy() for g in groups], [g["event"].to_numpy() for g in groups])


def ann_vs_exact(engine, run):
    """run() with the HNSW index, then with the threshold above the catalog (the exact path)."""
    engine.config.ann.min_items = 1
    assert engine.uses_ann
    index = engine.retrieval_index()
    before = dict(index.rows)
    ann = run()
    assert index.rows["ann"] > before["ann"], "no row went through HNSW: the test would not test it"
    engine.config.ann.min_items = 10 ** 9
    assert not engine.uses_ann
    exact = run()
    engine.config.ann.min_items = 1
    return ann, exact


def assert_same_topk(ann, exact):
    """Same items in the same order; scores equal to float32 rounding (the index rescores exactly)."""
    np.testing.assert_array_equal(ann[0], exact[0])
    np.testing.assert_allclose(ann[1], exact[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_index_recall_exclusions_filters_and_fallback(metric):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(30, 24))
    V = (centers[rng.integers(0, 30, 4000)] + 0.3 * rng.normal(size=(4000, 24))).astype(np.float32)
    bias = rng.normal(0, 0.5, 4000).astype(np.float32)
    Q = (centers[rng.integers(0, 30, 64)] + 0.3 * rng.normal(size=(64, 24))).astype(np.float32)
    ann, exact = ItemIndex(V, bias, AnnConfig(**FORCED, metric=metric)), ItemIndex(V, bias, AnnConfig())
    assert ann.is_ann and not exact.is_ann
    excl = [rng.choice(4000, 30, replace=False) for _ in range(64)]
    mask = rng.random(4000) < 0.2                                    # a filter passing ~20 % of items
    a, e = ann.search(Q, 10, excl, mask), exact.search(Q, 10, excl, mask)
    recall = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a[0], e[0])])
    assert recall >= 0.99, recall
    for row, ex in zip(a[0], excl):
        assert not set(row) & set(ex) and mask[row].all()
    np.testing.assert_allclose(a[1], ann.scores(Q)[np.arange(64)[:, None], a[0]], rtol=1e-5)  # exact scores
    # A filter passing 4 items: too selective to over-fetch, answered exactly (4 items, then -1 pads),
    # over the whole catalog (flat_cutoff 0) or over just those items (the default flat_cutoff).
    tiny = np.zeros(4000, bool)
    tiny[[5, 77, 901, 3999]] = True
    flat = ItemIndex(V, bias, AnnConfig(min_items=1, metric=metric))
    for index in (ann, flat):
        idx, vals = index.search(Q[:3], 10, None, tiny)
        assert (idx[:, 4:] == -1).all() and np.isneginf(vals[:, 4:]).all()
        np.testing.assert_array_equal(idx, exact.search(Q[:3], 10, None, tiny)[0])
    assert flat.rows["exact"] == 3 and flat.rows["ann"] == 0


def test_vae_ann_equals_exact_and_index_round_trips(ds, tmp_path):
    cfg = VAEConfig(hidden=[32], latent=8, epochs=10, batch_size=32, lr=3e-3, torch_threads=1, ann=dict(FORCED))
    eng = VAEEngine(cfg, ds.catalog).fit(ds.train)
    batch = histories(ds)
    phones = eng.allowed(category="phones", max_price=300)
    excl = [np.array([b]) for b in range(len(batch))]
    ann, exact = ann_vs_exact(eng, lambda: eng.recommend(batch, 10, allowed=phones, exclude=excl))
    assert_same_topk(ann, exact)
    for row, seen, ex in zip(ann[0], batch.items, excl):
        row = row[row >= 0]
        assert phones[row].all() and not set(row) & (set(seen) | set(ex))
    # The artifact carries the index; the loaded engine reads it instead of rebuilding.
    folder = eng.save(tmp_path / "vae")
    assert (folder / INDEX_FILE).exists()
    loaded = VAEEngine.load(folder)
    assert loaded.uses_ann and loaded.retrieval_index().loaded
    assert_same_topk(loaded.recommend(batch, 10, allowed=phones, exclude=excl), ann)


def test_content_ann_equals_exact_for_similar_and_profiles(ds, tmp_path):
    cfg = ContentConfig(cache_dir=str(tmp_path / "emb"), progress=False, batch_size=64, torch_threads=1,
                        ann=dict(FORCED))
    eng = ContentEngine(cfg, ds.catalog).fit()
    for item in (0, 7, 100):
        ann, exact = ann_vs_exact(eng, lambda: eng.similar(item, 10, same_category=True, max_price=400,
                                                           exclude=(item + 6,)))
        assert_same_topk(ann, exact)
        assert item not in ann[0] and item + 6 not in ann[0]
    batch = histories(ds, 20)
    assert_same_topk(*ann_vs_exact(eng, lambda: eng.recommend(batch, 10)))


def test_sasrec_ann_equals_exact_in_keras_and_litert(ds, tmp_path):
    cfg = SasrecConfig(max_len=16, hidden=16, blocks=1, heads=2, epochs=3, batch=32, lr=0.01, jit_compile=False,
                       ann=dict(FORCED))
    eng = SasrecEngine(cfg, ds.catalog).fit(ds.train)
    batch = histories(ds)
    books = eng.allowed(category="books")
    ann, exact = ann_vs_exact(eng, lambda: eng.recommend(batch, 10, allowed=books))
    assert_same_topk(ann, exact)
    # The LiteRT artifact retrieves through hidden.tflite + the saved index, with the same answer.
    lite = SasrecTFLite(eng.save(tmp_path / "sasrec"))
    assert lite.uses_ann
    got = lite.retrieve(batch, 10, list(batch.items), books)
    assert lite.retrieval_index().loaded
    np.testing.assert_array_equal(got[0], ann[0])
    np.testing.assert_allclose(got[1], ann[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_a_catalog_of_repeated_vectors_is_indexed_once_per_distinct_vector(metric, tmp_path):
    """Product variants share a text embedding. The graph holds each distinct vector once and a search
    expands it back into its items: before this, a 10^5-item catalog of 21k distinct content vectors
    searched at recall@10 0.70, the HNSW links filled with duplicates."""
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(20, 16))
    distinct = (centers[rng.integers(0, 20, 600)] + 0.3 * rng.normal(size=(600, 16))).astype(np.float32)
    copies = rng.integers(1, 40, 600)                                 # 1-39 items per vector
    V = np.repeat(distinct, copies, axis=0)[rng.permutation(copies.sum())]
    Q = (centers[rng.integers(0, 20, 50)] + 0.3 * rng.normal(size=(50, 16))).astype(np.float32)
    ann, exact = ItemIndex(V, None, AnnConfig(**FORCED, metric=metric)), ItemIndex(V, None, AnnConfig())
    assert ann.index.ntotal == 600 and ann.is_ann
    seen = [rng.choice(len(V), 20, replace=False) for _ in range(50)]
    a, e = ann.search(Q, 10, seen), exact.search(Q, 10, seen)
    # Identical vectors tie, so compare the scores of the top 10 (the items may differ within a tie).
    np.testing.assert_allclose(a[1], e[1], rtol=1e-5)
    for row, s in zip(a[0], seen):
        assert len(set(row)) == 10 and not set(row) & set(s)
    # The saved graph is found again by its fingerprint (which counts the nodes).
    ann.save(tmp_path / "index.faiss")
    again = ItemIndex(V, None, AnnConfig(**FORCED, metric=metric), saved=tmp_path / "index.faiss")
    assert again.loaded and again.index.ntotal == 600
    np.testing.assert_allclose(again.search(Q, 10, seen)[1], e[1], rtol=1e-5)
