"""Similarity engine (BERT-family text encoder): filters, cold-start items, user profiles, the
embedding cache, the artifact round trip and offline loading."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.base import Engine
from models.content import ContentConfig, ContentEngine, default_model_path, item_texts
from recdata.dataset import encode
from recdata.filters import allowed_mask
from recdata.schema import BadRowReport, EventLog, HistoryBatch, make_events

REPO = Path(__file__).resolve().parents[2]
ITEMS = pd.DataFrame({
    "item": [101, 102, 103, 104, 105, 106, 107, 108, 109, 110],
    "title": ["Trail running shoes", "Leather office shoes", "Kids sneakers", "Android smartphone 128GB",
              "Budget smartphone", "Wireless earbuds", "Cookbook of Italian pasta", "Science fiction novel",
              "Waterproof hiking boots", "Flagship phone with triple camera"],
    "brand": ["run", "classic", "tiny", "samsung", "xiaomi", "sony", "", "", "alpine", "apple"],
    "category": ["apparel.shoes", "apparel.shoes", "apparel.shoes", "electronics.smartphone",
                 "electronics.smartphone", "electronics.audio", "books", "books", "apparel.shoes",
                 "electronics.smartphone"],
    "price": [120.0, 80.0, 35.0, 300.0, 99.0, 59.0, 15.0, 12.0, 150.0, 999.0],
})
COLD = [109, 110]  # in the catalog, never interacted with


@pytest.fixture(scope="module")
def catalog():
    users = np.array([1, 1, 1, 2, 2, 3, 3, 3])
    items = np.array([101, 102, 104, 105, 106, 107, 108, 103])
    log = EventLog(make_events(users, items, np.arange(8), [0, 1, 2, 0, 0, 0, 2, 1]), ITEMS, BadRowReport())
    cat, inter = encode(log)
    assert set(cat.item_raw(np.arange(cat.n_items))) == set(ITEMS["item"])
    return cat, inter


@pytest.fixture(scope="module")
def engine(catalog, tmp_path_factory):
    cat, inter = catalog
    cfg = ContentConfig(cache_dir=str(tmp_path_factory.mktemp("emb")), progress=False, batch_size=4,
                        torch_threads=1)
    return ContentEngine(cfg, cat).fit(inter)


def idx(cat, raw):
    return int(cat.item_index([raw])[0])


def test_item_text_uses_metadata():
    texts = item_texts(ITEMS, np.array([40.0, 100.0, 200.0, 500.0]))
    assert texts[3] == "Android smartphone 128GB. Category: electronics > smartphone. Brand: samsung. Price: expensive."
    movie = item_texts(pd.DataFrame({"item": [1], "title": ["Toy Story (1995)"], "genres": ["Animation|Comedy"],
                                     "category": ["Animation"]}))
    assert movie == ["Toy Story (1995). Genres: Animation, Comedy."]


def test_category_filter_is_the_serving_filter(engine, catalog):
    """/similar (the content engine) and /recommend (the serving path) apply one filter: a parent
    category in any case matches its subcategories."""
    cat, _ = catalog
    got, _ = engine.similar("a phone", k=10, category="Electronics")
    assert set(cat.items["category"].iloc[got]) == {"electronics.smartphone", "electronics.audio"}
    np.testing.assert_array_equal(engine.allowed(category="Electronics"), allowed_mask(cat, category="electronics"))


def test_filters_category_price_exclude(engine, catalog):
    cat, _ = catalog
    shoe = idx(cat, 101)
    got, scores = engine.similar(shoe, k=10, same_category=True)
    assert shoe not in got and len(got) == 3                        # the other three shoes, not itself
    assert set(cat.items["category"].iloc[got]) == {"apparel.shoes"}
    assert np.all(np.diff(scores) <= 1e-7)                          # best first
    got, _ = engine.similar(shoe, k=10, min_price=50, max_price=200)
    prices = cat.items["price"].iloc[got].to_numpy()
    assert len(got) and ((prices >= 50) & (prices <= 200)).all()
    got, _ = engine.similar("a phone", k=10, category="electronics.smartphone", max_price=400,
                            exclude=[idx(cat, 105)])
    assert sorted(cat.item_raw(got)) == [104]
    # The same mask serves the Engine API's recommend(allowed=...).
    mask = engine.allowed(category="books")
    rec, _ = engine.recommend(HistoryBatch.of([[shoe]]), k=5, allowed=mask)
    assert set(cat.item_raw(rec[rec >= 0])) == {107, 108}
    with pytest.raises(IndexError, match="catalog.item_index"):
        engine.similar(999)


def test_cold_start_items_are_retrievable(engine, catalog):
    cat, inter = catalog
    cold = cat.item_index(COLD)
    assert (inter.item_counts()[cold] == 0).all()                   # truly without events
    assert np.allclose(np.linalg.norm(engine.item_emb[cold], axis=1), 1.0, atol=1e-4)
    got, _ = engine.similar("hiking boots that keep water out", k=1)
    assert cat.item_raw(got)[0] == 109
    got, _ = engine.similar(idx(cat, 104), k=3, same_category=True)   # phone -> phones, cold one included
    assert 110 in cat.item_raw(got)
    # A user who looked at phones gets the cold flagship phone among the recommendations.
    rec, _ = engine.recommend(HistoryBatch.of([[idx(cat, 104), idx(cat, 105)]], [[0, 2]]), k=3)
    assert 110 in cat.item_raw(rec[0])


def test_profile_is_recency_weighted(engine, catalog):
    cat, _ = catalog
    book, phone = idx(cat, 107), idx(cat, 104)
    recent_phone = engine.score(HistoryBatch.of([[book, phone]]))[0]
    recent_book = engine.score(HistoryBatch.of([[phone, book]]))[0]
    other_phone, other_book = idx(cat, 105), idx(cat, 108)
    assert recent_phone[other_phone] > recent_book[other_phone]
    assert recent_book[other_book] > recent_phone[other_book]
    assert np.all(engine.score(HistoryBatch.of([[]]))[0] == 0)     # empty history: no preference


def test_cache_and_round_trip(engine, catalog, tmp_path):
    cat, inter = catalog
    again = ContentEngine(engine.config, cat).fit(inter)
    assert again.encoder._model is None and again.encoder.cache_hits == cat.n_items   # all from disk
    np.testing.assert_array_equal(again.item_emb, engine.item_emb)
    folder = engine.save(tmp_path / "content")
    loaded = Engine.load(folder)
    assert isinstance(loaded, ContentEngine)
    np.testing.assert_array_equal(loaded.item_emb, engine.item_emb)
    for q in (idx(cat, 101), "cheap phone"):
        a, sa = engine.similar(q, k=4, min_price=20)
        b, sb = loaded.similar(q, k=4, min_price=20)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(sa, sb, rtol=1e-5)


def test_encoder_loads_offline(tmp_path):
    code = """
import numpy as np
from models.content import TextEncoder
enc = TextEncoder(progress=False, threads=1)
v = enc.encode(["wireless headphones", "noise cancelling earbuds", "pasta recipe"])
assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
assert v[0] @ v[1] > v[0] @ v[2]
print("offline ok")
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0 and "offline ok" in out.stdout, out.stderr[-2000:]
    assert Path(default_model_path(), "config.json").exists()


def test_bad_model_path_says_the_fix(catalog, tmp_path):
    cat, inter = catalog
    eng = ContentEngine(ContentConfig(model_path=str(tmp_path / "nope"), cache_dir=""), cat)
    with pytest.raises(FileNotFoundError, match="local Hugging Face model"):
        eng.fit(inter)
