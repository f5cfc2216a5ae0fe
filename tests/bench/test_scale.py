"""bench.scale: the smallest rung through the real code path (synthetic log, both preparation paths in
their own processes, the pipeline with per-stage memory), and the documented keys of its JSON line."""
from __future__ import annotations

import json
import math

from bench.scale import catalog_items, label, slope


def test_labels_catalogs_and_slopes():
    assert [label(n) for n in (2e4, 1e5, 1e6, 1e7, 4e7)] == ["20k", "100k", "1m", "10m", "40m"]
    assert [catalog_items(n) for n in (1e5, 1e6, 1e7, 4e7)] == [1000, 10_000, 100_000, 166_794]
    assert abs(slope([1e5, 1e6, 1e7], [1.0, 10.0, 100.0]) - 1.0) < 1e-9
    assert math.isnan(slope([1e5], [3.0]))


def test_smallest_rung_reports_finite_figures(tmp_path, capsys):
    from bench.scale import main

    out = main(["--sizes", "2e4", "--out", str(tmp_path), "--stages", "popularity,vae", "--skip-serve",
                "--min-budget-minutes", "0.3", "--vae-epochs", "2"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == out
    run = [f"prepare_{p}_20k_{f}" for p in ("pandas", "ray") for f in ("seconds", "peak_rss_gb")]
    run += [f"{e}_20k_{f}" for e in ("popularity", "vae")
            for f in ("seconds", "epochs", "epoch_seconds", "peak_rss_gb")]
    run += ["pipeline_20k_minutes", "pipeline_20k_peak_rss_gb", "data_20k_events"]
    for key in run:
        assert isinstance(out[key], (int, float)) and math.isfinite(out[key]) and out[key] >= 0, (key, out[key])
    assert out["data_20k_events"] > 10_000 and out["vae_20k_epochs"] == 2
    # Ray's figure counts its GCS, raylet and workers: far above a bare interpreter's.
    assert out["prepare_ray_20k_peak_rss_gb"] > 0.3
    assert out["pipeline_20k_peak_rss_gb"] >= out["vae_20k_peak_rss_gb"] > 0
    for key in ("sasrec_20k_epoch_seconds", "prepare_pandas_1m_seconds", "recommend_ann_100k_p99_ms",
                "pipeline_10m_minutes", "prepare_slope", "vae_slope_seconds"):
        assert key in out and out[key] is None, key
