"""The retrieval role over an ANN artifact (serve_app/retrieval.py `EngineServer`, no Ray started): with
the threshold forced low it answers through the saved HNSW index, and its answers -- seen items, excludes,
category and price filters, per request -- equal those of the same weights served exactly."""
from __future__ import annotations

import numpy as np

from models.vae import VAEConfig, VAEEngine
from recdata.dataset import encode, leave_one_out
from serve_app.retrieval import EngineServer
from support import shop_log


def test_answers_through_the_index_equal_the_exact_answers(tmp_path):
    catalog, inter = encode(shop_log())
    cfg = VAEConfig(hidden=[32], latent=8, epochs=5, batch_size=32, torch_threads=1,
                    ann={"min_items": 1, "flat_cutoff": 0})
    eng = VAEEngine(cfg, catalog).fit(leave_one_out(inter))
    ann_dir = eng.save(tmp_path / "ann")
    eng.config.ann.min_items = 10 ** 9                    # the same weights, served by the exact path
    exact_dir = eng.save(tmp_path / "exact")
    ann, exact = EngineServer("discovery", str(ann_dir)), EngineServer("discovery", str(exact_dir))
    assert ann.load_error is None and ann.engine.uses_ann and ann.engine.retrieval_index().loaded
    assert not exact.engine.uses_ann
    raw = catalog.item_raw(np.arange(catalog.n_items)).tolist()
    reqs = [{"items": raw[:6], "n": 10},
            {"items": raw[6:12], "n": 5, "exclude": raw[20:40], "filters": {"max_price": 250.0}},
            {"items": raw[12:20], "n": 10, "filters": {"category": "phones"}, "exclude_seen": False},
            {"items": [], "n": 10, "filters": {"category": "books", "min_price": 100.0}}]
    before = ann.engine.retrieval_index().rows["ann"]
    got, want = ann.answer(reqs), exact.answer(reqs)
    assert ann.engine.retrieval_index().rows["ann"] > before
    for g, w in zip(got, want):
        assert g["items"] == w["items"]
        np.testing.assert_allclose(g["scores"], w["scores"], rtol=1e-4, atol=1e-4)
    assert not set(got[1]["items"]) & set(raw[6:12] + raw[20:40])
