"""Scale ladder (issue 18): preparation on both paths, every engine's training, the whole pipeline under
its budgets and the served app, on synthetic REES46-schema logs of 10^5, 10^6, 10^7 (and 4*10^7) events.

    python -m bench.scale [--sizes 1e5,1e6,1e7] [--full] [--out .recsys/bench/scale] [--skip-serve]
        [--prepare-only] [--prepare-repeats 1]
        [--budget-minutes 60] [--max-minutes M] [--stages popularity,vae,...] [--vae-epochs 20]

A rung of N events is `recsys data synth --users N/27.9 --items N/100` (27.9 events per user, as the
generator makes them; catalogs of 10^3, 10^4, 10^5 items at 10^5, 10^6, 10^7 events, and REES46
October's 166,794 at 4*10^7), written once under --out/<size>/ and reused. For each rung, in order:
  prepare_<path>   `recsys data prepare --engine pandas|ray` in a fresh process, into an empty cache;
                   seconds (wall, Ray start-up included; the median of --prepare-repeats runs, the paths
                   alternating) and peak memory of the whole process tree
                   (bench/scale_parts.py: summed PSS of the CLI, Ray's GCS, raylet and every worker).
  pipeline         `recsys pipeline --force` with a config whose budgets scale with the rung:
                   B = max(--min-budget-minutes, --budget-minutes * N / 10^7) minutes in all, of which
                   the training budgets take 0.9 B of CPU time (SASRec max_train_minutes 0.35 B, the DQN
                   time_budget_s 0.25 B (timesteps: that budget x --dqn-steps-per-s, so
                   epsilon anneals inside it), the VAE max_train_minutes 0.15 B
                   (at most --vae-epochs epochs), EASE's lambda grid 0.15 B (skipped above its max_items,
                   20,000)); on 2 CPUs two run at a time, leaving the rest of B for evaluation, the
                   content embedding and registration. Every evaluation ranks all items for a fixed sample
                   of --eval-users users (the pipeline's `evaluation.max_users`). Stages run side by side
                   as the pipeline runs them, each in a Ray worker of its own (bench/scale_parts.py pipeline).
                   minutes: wall time of the whole run, Ray start-up and its own prepare stage included.
  <engine>         popularity, vae, ease, content, sasrec, dqn, read from the pipeline's stage records
                   ($RECSYS_HOME/pipeline/<stage>.json): seconds (the stage: fit, evaluation on
                   validation and test, registration), fit_seconds (training alone) beside
                   budget_seconds (its configured budget), epochs and epoch_seconds (fit seconds / epochs;
                   one epoch is a pass over the training users for the VAE and SASRec, the one fit for
                   popularity and content, one lambda's fit for EASE, 1,000 env steps for the DQN), and
                   peak_rss_gb: the summed PSS of the stage's worker and the tasks/actors it started,
                   sampled while all stages ran side by side.
  recommend/similar  the app deployed from this rung's registry (serve_app/config.yaml, DQN decision),
                   twice: every retrieval engine re-saved with exact top-k, then with the HNSW index
                   (models/ann.py `ann.min_items`); p50/p99 of --requests requests at 1 client. Keys are
                   named by catalog size: the 10^5-event rung gives `recommend_exact_1k_p99_ms`.
Per rung a table; over rungs the log-log slope of seconds and of peak memory against events
(`<stage>_slope_seconds`, `<stage>_slope_peak_rss_gb`; NaN with one rung), `prepare_slope` the larger of
the two preparation paths' seconds slopes. The LAST line is one JSON object: `<stage>_<size>_<figure>`
for every rung of the ladder (null where not run), the slopes, and `pipeline_10m_minutes`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from bench.scale_parts import run_sampled
from recdata.synthetic import SyntheticConfig, write_csv

EVENTS_PER_USER = 27.9   # recdata.synthetic's default shoppers (issue 18: 2.79M events of 100,000 users)
REES46_ITEMS = 166_794   # products in REES46 October 2019
ENGINES = ("popularity", "vae", "ease", "content", "sasrec", "dqn")
PREPARE = ("pandas", "ray")
SERVE = [f"{ep}_{mode}_{q}" for ep in ("recommend", "similar") for mode in ("exact", "ann")
         for q in ("p50_ms", "p99_ms")]
MIN_ITEMS = 500          # the generator needs >= 472 (118 calibrated categories of >= 4 items)


def label(n: float) -> str:
    """10^5 -> '100k', 10^7 -> '10m', 4*10^7 -> '40m'."""
    n = int(round(n))
    return f"{n // 10**6}m" if n >= 10**6 and n % 10**6 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def catalog_items(events: float) -> int:
    return int(min(REES46_ITEMS, max(MIN_ITEMS, round(events / 100))))


def budget_minutes(events: float, a) -> float:
    return max(a.min_budget_minutes, a.budget_minutes * events / 1e7)


def pipeline_config(events: float, a) -> dict:
    """A PipelineConfig dict (trainers/pipeline.py) whose budgets scale with the rung (see the docstring)."""
    b = budget_minutes(events, a)
    stages = ["prepare", *(a.stages.split(",") if a.stages else ENGINES)]
    return {"stages": stages, "popularity": {},
            "vae": {"epochs": a.vae_epochs, "eval_every": max(1, a.vae_epochs // 4), "torch_threads": 1,
                    "max_train_minutes": round(0.15 * b, 3)},
            "ease": {"max_train_minutes": round(0.15 * b, 3)},
            "content": {"torch_threads": 1},
            "sasrec": {"max_len": 50, "epochs": 200, "patience": 3, "eval_every": 1, "use_event_types": True,
                       "max_train_minutes": round(0.35 * b, 3)},
            # timesteps: what the budget allows at --dqn-steps-per-s, so epsilon (annealed over 40 % of them)
            # reaches its floor inside the budget; a 10^7-step schedule left it at 0.96 when the budget ended.
            "dqn": {"timesteps": a.dqn_timesteps or int(a.dqn_steps_per_s * 60 * 0.25 * b),
                    "time_budget_s": round(60 * 0.25 * b, 1),
                    "eval_episodes": a.dqn_eval_episodes, "checkpoint_every": 5},
            "evaluation": {"max_users": a.eval_users}}


def budget_seconds(name: str, options: dict) -> float | None:
    """The stage's training budget in seconds as configured (None: the stage has none)."""
    if name == "dqn":
        return options.get("time_budget_s")
    minutes = options.get("max_train_minutes")
    return 60 * minutes if minutes else None


def engine_figures(name: str, rec: dict, options: dict) -> dict:
    """seconds, fit_seconds, budget_seconds, epochs, epoch_seconds of one stage record (None where the stage
    was skipped). fit_seconds is training alone; seconds adds evaluation and registration."""
    if rec.get("skipped") or "seconds" not in rec:
        return {"seconds": rec.get("seconds"), "fit_seconds": None, "budget_seconds": None, "epochs": None,
                "epoch_seconds": None}
    fit = rec.get("train_seconds", rec.get("fit_seconds"))
    epochs = {"vae": rec.get("epochs", options.get("epochs")), "sasrec": rec.get("epochs"),
              "ease": rec.get("fits", len(options.get("lambdas", [])) or 3),
              "dqn": rec.get("timesteps", 0) / 1000}.get(name, 1)
    return {"seconds": rec["seconds"], "fit_seconds": fit, "budget_seconds": budget_seconds(name, options),
            "epochs": epochs, "epoch_seconds": fit / epochs if fit is not None and epochs else None}


def run_rung(events: float, a, out: Path) -> dict:
    s, root = label(events), out / label(events)
    users, items = max(10, round(events / EVENTS_PER_USER)), catalog_items(events)
    log = root / "data" / f"rees46-u{users}-i{items}.csv"
    fig: dict = {}
    t0 = time.perf_counter()
    if not log.exists():
        write_csv(SyntheticConfig(n_users=users, n_items=items), log.with_suffix(".tmp"))
        log.with_suffix(".tmp").rename(log)
    fig[f"data_{s}_synth_seconds"] = time.perf_counter() - t0
    fig[f"data_{s}_users"], fig[f"data_{s}_items"] = users, items
    with open(log) as f:
        fig[f"data_{s}_events"] = sum(1 for _ in f) - 1
    fig[f"data_{s}_csv_gb"] = log.stat().st_size / 2**30
    print(f"[scale {s}] {fig[f'data_{s}_events']:,} events, {users:,} users, {items:,} items: {log}", flush=True)
    py, env = sys.executable, {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    limit = 60 * (a.max_minutes or 2 * budget_minutes(events, a) + 10)

    # Repeats alternate the paths, so that a noisy spell of a shared machine falls on both; medians kept.
    runs: dict[str, list] = {path: [] for path in PREPARE}
    for _ in range(a.prepare_repeats):
        for path in PREPARE:
            cache = root / f"prepared_{path}"
            if cache.exists():
                import shutil

                shutil.rmtree(cache)
            r = run_sampled([py, "-m", "trainers.data", "prepare", "--format", "rees46", "--path", str(log),
                             "--cache", str(cache), "--engine", path], root / f"prepare_{path}.log", env, limit)
            runs[path].append(r if r["rc"] == 0 else None)
            print(f"[scale {s}] prepare {path}: {r['seconds']:.1f} s, peak {r['peak_gb']:.2f} GB"
                  + ("" if r["rc"] == 0 else f" FAILED rc {r['rc']} (see {root / f'prepare_{path}.log'})"), flush=True)
    for path, rs in runs.items():
        ok = all(rs)
        fig[f"prepare_{path}_{s}_seconds"] = float(np.median([r["seconds"] for r in rs])) if ok else None
        fig[f"prepare_{path}_{s}_peak_rss_gb"] = max(r["peak_gb"] for r in rs) if ok else None
    if a.prepare_only:
        return fig

    cfg = pipeline_config(events, a)
    home = root / "home"
    (root / "pipeline.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = run_sampled([py, "-m", "bench.scale_parts", "pipeline", "--format", "rees46", "--path", str(log),
                     "--config", str(root / "pipeline.yaml"), "--force"], root / "pipeline.log",
                    {**env, "RECSYS_HOME": str(home), "MLFLOW_TRACKING_URI": None}, limit)
    ok = r["rc"] == 0
    fig[f"pipeline_{s}_budget_minutes"] = budget_minutes(events, a)
    fig[f"pipeline_{s}_minutes"] = r["seconds"] / 60 if ok else None
    fig[f"pipeline_{s}_peak_rss_gb"] = r["peak_gb"] if ok else None
    print(f"[scale {s}] pipeline: {r['seconds'] / 60:.1f} min (budget {budget_minutes(events, a):.1f}), peak "
          f"{r['peak_gb']:.2f} GB" + ("" if ok else f" FAILED rc {r['rc']} (see {root / 'pipeline.log'})"), flush=True)
    records = home / "pipeline"
    prep = json.loads((records / "prepare.json").read_text()) if (records / "prepare.json").exists() else {}
    fig[f"pipeline_{s}_prepare_seconds"] = prep.get("seconds")
    for name in ENGINES:
        f = records / f"{name}.json"
        rec = json.loads(f.read_text()) if ok and f.exists() and name in cfg["stages"] else {}
        for k, v in engine_figures(name, rec, cfg.get(name, {})).items():
            fig[f"{name}_{s}_{k}"] = v
        fig[f"{name}_{s}_peak_rss_gb"] = r["stage_peak_gb"].get(name) if rec else None

    if not a.skip_serve and ok and prep.get("dataset_dir"):
        res = root / "serve.json"
        res.unlink(missing_ok=True)
        r = run_sampled([py, "-m", "bench.scale_parts", "serve", "--dataset", prep["dataset_dir"], "--out", str(res),
                         "--requests", str(a.requests)], root / "serve.log",
                        {**env, "RECSYS_HOME": str(home), "MLFLOW_TRACKING_URI": None}, limit)
        got = json.loads(res.read_text()) if r["rc"] == 0 and res.exists() else {}
        cat = label(items)
        for k in SERVE:
            ep, rest = k.split("_", 1)
            mode, q = rest.split("_", 1)
            fig[f"{ep}_{mode}_{cat}_{q}"] = got.get(k)
        fig[f"serve_{cat}_items"] = got.get("items")
        fig[f"serve_{cat}_failed"] = sum(got.get(f"{ep}_{m}_failed", 0) for ep in ("recommend", "similar")
                                         for m in ("exact", "ann")) if got else None
        print(f"[scale {s}] serve: {r['seconds']:.0f} s" + ("" if got else f" FAILED (see {root / 'serve.log'})"),
              flush=True)
    return fig


def slope(xs: list[float], ys: list) -> float:
    """Least-squares slope of log10(y) on log10(x) over the points with a positive y; NaN below two."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and y > 0]
    if len(pts) < 2:
        return float("nan")
    lx, ly = np.log10([p[0] for p in pts]), np.log10([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def print_rung(fig: dict, events: float) -> None:
    s = label(events)
    print(f"\n== {s} events: {fmt(fig.get(f'data_{s}_events'), ',')} events, {fmt(fig.get(f'data_{s}_users'), ',')} "
          f"users, {fmt(fig.get(f'data_{s}_items'), ',')} items, CSV {fmt(fig.get(f'data_{s}_csv_gb'), '.3f')} GB")
    print(f"{'stage':<16}{'seconds':>10}{'fit s':>8}{'budget s':>9}{'epochs':>8}{'s/epoch':>10}{'peak GB':>9}")
    for path in PREPARE:
        print(f"{'prepare ' + path:<16}{fmt(fig.get(f'prepare_{path}_{s}_seconds'), '.1f'):>10}{'':>8}{'':>9}{'':>8}"
              f"{'':>10}{fmt(fig.get(f'prepare_{path}_{s}_peak_rss_gb')):>9}")
    for name in ENGINES:
        print(f"{name:<16}{fmt(fig.get(f'{name}_{s}_seconds'), '.1f'):>10}"
              f"{fmt(fig.get(f'{name}_{s}_fit_seconds'), '.1f'):>8}"
              f"{fmt(fig.get(f'{name}_{s}_budget_seconds'), '.0f'):>9}{fmt(fig.get(f'{name}_{s}_epochs'), 'g'):>8}"
              f"{fmt(fig.get(f'{name}_{s}_epoch_seconds'), '.2f'):>10}{fmt(fig.get(f'{name}_{s}_peak_rss_gb')):>9}")
    m = fig.get(f"pipeline_{s}_minutes")
    print(f"{'pipeline':<16}{fmt(m * 60 if m else None, '.1f'):>10}{'':>8}{'':>10}"
          f"{fmt(fig.get(f'pipeline_{s}_peak_rss_gb')):>9}   ({fmt(m, '.1f')} of "
          f"{fmt(fig.get(f'pipeline_{s}_budget_minutes'), '.1f')} budget minutes)")
    cat = label(catalog_items(events))
    if fig.get(f"recommend_exact_{cat}_p50_ms") is not None:
        print(f"serving at {fmt(fig.get(f'serve_{cat}_items'), ',')} items (1 client), ms:  p50 / p99")
        for ep in ("recommend", "similar"):
            print(f"  /{ep:<10}" + "  ".join(f"{mode} {fmt(fig.get(f'{ep}_{mode}_{cat}_p50_ms'), '.1f')} / "
                                              f"{fmt(fig.get(f'{ep}_{mode}_{cat}_p99_ms'), '.1f')}"
                                              for mode in ("exact", "ann")))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", help="events per rung, comma-separated (default 1e5,1e6,1e7; with --full also 4e7)")
    p.add_argument("--full", action="store_true", help="add the 4*10^7-event rung (a REES46 month)")
    p.add_argument("--out", default=".recsys/bench/scale", help="logs, prepared data and work dirs, per rung")
    p.add_argument("--skip-serve", action="store_true", help="no /recommend and /similar figures")
    p.add_argument("--prepare-only", action="store_true", help="each rung stops after preparation (both paths)")
    p.add_argument("--prepare-repeats", type=int, default=1, help="preparation runs per path, alternating "
                   "(the median seconds and the largest peak are kept)")
    p.add_argument("--max-minutes", type=float, help="wall limit per step of a rung (default 2 x budget + 10)")
    p.add_argument("--budget-minutes", type=float, default=60.0, help="the pipeline's budget at 10^7 events; "
                   "scaled in proportion to the events")
    p.add_argument("--min-budget-minutes", type=float, default=3.0, help="the smallest budget of a rung")
    p.add_argument("--stages", help=f"engines the pipeline trains (default all: {','.join(ENGINES)})")
    p.add_argument("--vae-epochs", type=int, default=20, help="most VAE epochs (its time budget may end it first)")
    p.add_argument("--eval-users", type=int, default=20_000, help="users each evaluation ranks all items for "
                   "(a fixed seeded sample; the pipeline's evaluation.max_users)")
    p.add_argument("--dqn-timesteps", type=int, help="DQN env steps (default: its budget x --dqn-steps-per-s)")
    p.add_argument("--dqn-steps-per-s", type=float, default=350.0, help="DQN training rate the default timesteps "
                   "assume (333-473 env steps/s measured on this 2-core machine with another stage beside it)")
    p.add_argument("--dqn-eval-episodes", type=int, default=300, help="episodes of the DQN's greedy evaluation")
    p.add_argument("--requests", type=int, default=300, help="requests per endpoint and retrieval mode")
    a = p.parse_args(argv)
    unknown = sorted(set((a.stages or "").split(",")) - set(ENGINES) - {""})
    if unknown:
        p.error(f"unknown stage(s) {unknown}; choose from {list(ENGINES)}")
    ladder = [1e5, 1e6, 1e7] + ([4e7] if a.full else [])
    sizes = [float(x) for x in a.sizes.split(",")] if a.sizes else ladder
    out = Path(a.out).resolve()
    figs: dict = {}
    for n in sizes:
        fig = run_rung(n, a, out)
        print_rung(fig, n)
        figs.update(fig)

    stages = [f"prepare_{p}" for p in PREPARE] + list(ENGINES)
    result: dict = {}
    for n in sorted(set(ladder) | set(sizes)):
        s, cat = label(n), label(catalog_items(n))
        keys = ([f"data_{s}_{k}" for k in ("events", "users", "items", "csv_gb", "synth_seconds")]
                + [f"{st}_{s}_{k}" for st in stages for k in ("seconds", "peak_rss_gb")]
                + [f"{e}_{s}_{k}" for e in ENGINES
                   for k in ("fit_seconds", "budget_seconds", "epochs", "epoch_seconds")]
                + [f"pipeline_{s}_{k}" for k in ("minutes", "budget_minutes", "peak_rss_gb", "prepare_seconds")]
                + [f"{k.split('_')[0]}_{k.split('_')[1]}_{cat}_{k.split('_', 2)[2]}" for k in SERVE])
        result.update({k: figs.get(k) for k in keys})
    xs = [figs.get(f"data_{label(n)}_events") or n for n in sizes]
    print("\nlog-log slope of cost against events" + (" (one rung: none)" if len(sizes) < 2 else ""))
    for st in [*stages, "pipeline"]:
        if a.prepare_only and not st.startswith("prepare"):
            continue
        sec = [figs.get(f"{st}_{label(n)}_seconds") if st != "pipeline" else
               (figs.get(f"pipeline_{label(n)}_minutes") or 0) * 60 or None for n in sizes]
        mem = [figs.get(f"{st}_{label(n)}_peak_rss_gb") for n in sizes]
        result[f"{st}_slope_seconds"], result[f"{st}_slope_peak_rss_gb"] = slope(xs, sec), slope(xs, mem)
        print(f"  {st:<16} seconds {fmt(result[f'{st}_slope_seconds']):>6}   peak memory "
              f"{fmt(result[f'{st}_slope_peak_rss_gb']):>6}")
    # Per event: the issue compares the Ray path at 10^7 events with the pandas path at 10^6.
    for n in sizes:
        for path in PREPARE:
            sec, ev = figs.get(f"prepare_{path}_{label(n)}_seconds"), figs.get(f"data_{label(n)}_events")
            result[f"prepare_{path}_{label(n)}_us_per_event"] = 1e6 * sec / ev if sec and ev else None
    print("preparation, microseconds per event: " + ", ".join(
        f"{path} {label(n)} {fmt(result[f'prepare_{path}_{label(n)}_us_per_event'], '.1f')}"
        for n in sizes for path in PREPARE))
    result["prepare_slope"] = max((result[f"prepare_{p}_slope_seconds"] for p in PREPARE),
                                  key=lambda v: -math.inf if math.isnan(v) else v)
    result["pipeline_10m_minutes"] = figs.get("pipeline_10m_minutes")
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else
                 round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}
    print(json.dumps(clean))
    return clean


if __name__ == "__main__":
    main()
