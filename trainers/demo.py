"""`make demo`: the whole product on the embedded default data.

1. writes a synthetic REES46-schema event log (recdata.synthetic, calibrated on the REES46 sample),
2. runs the training pipeline on it (every engine, registered in MLflow),
3. prints the evaluation table (full ranking, popularity beside),
4. serves the engines with Ray Serve and answers a sample request,
5. closes the loop: posts shoppers' events (durably logged), retrains the quick engines on the base log +
   the served events, shows the promotion gate's decision, and a promoted version answers without a restart.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd

from models.markov import MarkovEngine
from reccore import logs, tracking
from recdata.dataset import PreparedDataset
from recdata.evaluation import evaluate
from recdata.synthetic import SyntheticConfig, write_csv
from serve_app.run import deploy, load_config, token_path
from trainers.pipeline import load_pipeline_config, run_pipeline

HERE = Path(__file__).resolve().parent
ROW_KEYS = ("test_hr@10", "test_ndcg@10", "test_hr@20", "test_ndcg@20", "test_coverage@10")


def results_table(outputs: dict, data_label: str = "") -> str:
    rows = {name: out for name, out in outputs.items() if any(k in out for k in ROW_KEYS)}
    width = max([len(n) for n in rows] + [10])
    lines = [(f"{data_label}\n" if data_label else "")
             + "test split: leave-one-out, full ranking over all items, seen items filtered, ties against the target",
             f"{'engine':<{width}}  " + "  ".join(f"{k.removeprefix('test_'):>12}" for k in ROW_KEYS)]
    for name, out in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(
            f"{out[k]:>12.4f}" if isinstance(out.get(k), (int, float)) else f"{'-':>12}" for k in ROW_KEYS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1500, help="synthetic shoppers")
    p.add_argument("--items", type=int, default=800, help="synthetic catalog size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=str(HERE / "demo.yaml"), help="pipeline config")
    p.add_argument("--force", action="store_true", help="retrain every stage")
    p.add_argument("--keep-serving", action="store_true", help="leave the Serve app running after the sample request")
    args = p.parse_args(argv)
    logs.configure(logs.verbose())  # quiet unless RECSYS_LOG=debug / recsys --verbose

    import ray  # lazy: `recsys demo --help` answers without loading Ray

    data = tracking.work_dir() / "demo" / f"synthetic-u{args.users}-i{args.items}-s{args.seed}.csv"
    if not data.exists():
        summary = write_csv(SyntheticConfig(n_users=args.users, n_items=args.items, seed=args.seed), data)
        print(f"[demo] synthetic log: {summary['rows']:,} events, {args.users:,} users -> {data}", flush=True)
    print("[demo] starting Ray (local, with the dashboard)", flush=True)
    # One local Ray for training and serving, with the dashboard (token-authenticated in Ray 2.60).
    ctx = ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1",
                   logging_level=logs.ray_logging_level(),
                   runtime_env=logs.ray_runtime_env({"RECSYS_HOME": str(tracking.work_dir()),
                                                     "MLFLOW_TRACKING_URI": tracking.tracking_uri()}))
    try:
        config = load_pipeline_config(args.config)
        outputs = run_pipeline({"fmt": "rees46", "path": str(data), "load_kwargs": {}}, config, force=args.force)
        outputs["_config"] = {k: getattr(config, k) for k in RETRAIN}
        outputs["markov (baseline)"] = markov_baseline(outputs["prepare"]["dataset_dir"])
        print()
        print(results_table(outputs, SYNTHETIC_LABEL))
        return serve_and_ask(outputs, data, ctx.dashboard_url, args.keep_serving)
    finally:
        if not args.keep_serving:
            ray.shutdown()


SYNTHETIC_LABEL = ("synthetic data (planted category/brand/chain structure: accessory chains after purchases, "
                   "brand loyalty, interest drift; about six items per category), not a store's log.\n"
                   "The Markov row (item-to-item transition counts) shows how much of that structure a "
                   "simple model finds.")


def markov_baseline(dataset_dir: str) -> dict:
    """Test figures of the first-order item-to-item transition model: a reference row, not served."""
    ds = PreparedDataset.load(dataset_dir)
    test = evaluate(MarkovEngine(None, ds.catalog).fit(ds.train), ds, "test")
    return {f"test_{k}": v for k, v in test.items() if k != "users"}


ROLE_STAGES = {"sequence": "sasrec", "discovery": "vae", "similarity": "content", "popularity": "popularity"}
EVENT_NAMES = ("view", "cart", "purchase")


def ui_examples(log: pd.DataFrame, n: int = 12, last: int = 8) -> list[dict]:
    """Shoppers the try-it page offers: users with the longest histories, their newest items."""
    counts = log["user_id"].value_counts()
    users = counts.index[: n * 3 : 3]  # spread over the busiest third of a few dozen users
    out = []
    for u in users:
        rows = log[log["user_id"] == u].drop_duplicates(["product_id", "event_type"]).tail(last)
        out.append({"user_id": f"user_{u}", "history": rows["product_id"].tolist(),
                    "events": [e if e in EVENT_NAMES else "view" for e in rows["event_type"]]})
    return out


def serve_and_ask(outputs: dict, data: Path, dashboard_url: str | None, keep_serving: bool) -> int:
    """Deploy the engines the pipeline registered, then send the README's request shape with a real
    shopper's recent items, and a /similar request."""
    import httpx  # lazy: only the serving half of the demo talks HTTP

    engines = {role: outputs[stage]["artifact"] for role, stage in ROLE_STAGES.items()
               if outputs.get(stage, {}).get("artifact")}
    missing = sorted(set(ROLE_STAGES) - set(engines))
    decision = outputs.get("dqn", {}).get("artifact")
    log = pd.read_csv(data, usecols=["user_id", "product_id", "event_type"])
    config = load_config(engines={r: None for r in missing} | engines, decision=decision,
                         args={"ui_examples": ui_examples(log)})
    if not logs.verbose():  # Serve's deploy-time notices; a failed deploy still raises with Serve's message
        config.setdefault("logging_config", {})["log_level"] = "ERROR"
    t0 = time.perf_counter()
    print("\n[demo] deploying the Serve application", flush=True)
    url = deploy(config)
    # Readiness: /healthz calls every engine once, so the sample request does not pay for the
    # handles' first connection (which can overrun the engines' time budgets on a loaded laptop).
    health = httpx.get(f"{url}/healthz", timeout=60)
    engines_state = health.json().get("engines", {})
    print(f"[demo] serving in {time.perf_counter() - t0:.0f} s: {health.json().get('status')} "
          f"({', '.join(f'{k} {v}' for k, v in engines_state.items())})")
    user = log["user_id"].value_counts().index[len(log["user_id"].unique()) // 2]
    history = log.loc[log["user_id"] == user, "product_id"].drop_duplicates().tail(5).tolist()
    body = {"history": history, "user_id": f"user_{user}", "k": 5}
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/recommend", json=body, timeout=60)
    ms = (time.perf_counter() - t0) * 1000
    print(f"\nPOST /recommend {json.dumps(body)}\n-> {r.status_code} in {ms:.0f} ms", end="")
    if r.status_code == 200:
        ans = r.json()
        print(f"; ranker {ans['ranker']}, degraded {ans['degraded'] or 'none'}")
        print_items(httpx, url, [(x["item"], x["score"], x["engines"]) for x in ans["items"]])
    else:
        print(f"\n{r.text[:500]}")
    if "similarity" in engines:
        s = httpx.post(f"{url}/similar", json={"item": history[-1], "k": 3}, timeout=60)
        print(f"POST /similar {{\"item\": {history[-1]}, \"k\": 3}} -> {s.status_code}"
              + (f", engine {s.json()['engine']}" if s.status_code == 200 else f"\n{s.text[:300]}"))
        if s.status_code == 200:
            print_items(httpx, url, [(x["item"], x["score"], None) for x in s.json()["items"]])
    versions = httpx.get(f"{url}/version", timeout=30).json()["engines"]
    served = [f"{k} v{v.get('registry_version') or '-'} ({v.get('runtime') or v.get('engine')})"
              for k, v in versions.items()]
    print("GET /version -> " + ", ".join(served))
    if missing:
        print(f"[demo] not served (stage not run): {', '.join(missing)}")
    close_the_loop(httpx, url, log, data, outputs)
    print(f"\nTry it:        {url}/ui\nAPI docs:      {url}/docs\n"
          f"Ray dashboard: http://{dashboard_url}  (token: {token_path()}; Serve metrics under Metrics)\n"
          f"MLflow:        mlflow ui --backend-store-uri {tracking.tracking_uri()}")
    if keep_serving:
        print("Serving until interrupted (Ctrl-C).")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0 if r.status_code == 200 else 1


RETRAIN = ("popularity", "vae", "ease")  # quick stages: the loop is the point, not another full training run


def close_the_loop(httpx, url: str, log: pd.DataFrame, data: Path, outputs: dict, shoppers: int = 60) -> None:
    """Served traffic back into training: shoppers' events go through POST /events into the durable
    event log ($RECSYS_HOME/events), the quick engines retrain on base log + served events, the
    promotion gate decides, and a promoted version answers without a restart (replicas follow
    @champion: args.reload_s)."""
    events_dir = tracking.work_dir() / "events"
    users = log["user_id"].value_counts().index[:shoppers].tolist()
    popular = log["product_id"].value_counts().index[:40].tolist()
    acked = 0
    for n, u in enumerate(users):  # each shopper looks at a few popular items and buys one
        for j, ev in enumerate(("view", "view", "cart", "purchase")):
            body = {"user_id": int(u), "item": int(popular[(n + j) % len(popular)]), "event": ev}
            acked += httpx.post(f"{url}/events", json=body, timeout=30).status_code == 200
    print(f"\n[demo] posted {acked} events for {len(users)} shoppers (200 = fsync'd into {events_dir})")
    print(f"[demo] retraining {', '.join(RETRAIN)} on the base log + the served events "
          f"(recsys pipeline --path {data.name} --path {events_dir})", flush=True)
    before = httpx.get(f"{url}/version", timeout=30).json()["engines"]
    retrained = run_pipeline({"fmt": "rees46", "path": [str(data), str(events_dir)], "load_kwargs": {}},
                             dataclasses.replace(load_pipeline_config(None), stages=list(RETRAIN),
                                                 **{k: outputs_config(outputs, k) for k in RETRAIN}))
    print(f"[demo] prepared {retrained['prepare']['interactions']:,} interactions "
          f"({retrained['prepare']['bad_rows']:,} rows kept out, duplicates across inputs included)")
    roles = {**{stage: role for role, stage in ROLE_STAGES.items()}, "ease": "discovery"}  # ease, vae: one model
    for stage in RETRAIN:
        out, role = retrained[stage], roles[stage]
        if out.get("skipped"):
            print(f"[demo] {stage} skipped: {out['skipped']}")
            continue
        print(f"[demo] gate: {stage} v{out['version']} -> @{out['alias']} (val ndcg@10 {out['val_ndcg@10']:.4f}; "
              f"serving v{before.get(role, {}).get('registry_version', '-')})")
        if out["alias"] != "champion":
            continue
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 90:  # the replicas' next registry poll swaps it in
            now = httpx.get(f"{url}/version", timeout=30).json()["engines"].get(role, {})
            if now.get("registry_version") == out["version"]:
                print(f"[demo] {role} now answers with {stage} v{out['version']} ({time.perf_counter() - t0:.0f} s "
                      "after the promotion, no restart)")
                break
            time.sleep(1.0)
        else:
            print(f"[demo] {role} still serves v{now.get('registry_version')}: see the replica logs")


def outputs_config(outputs: dict, stage: str) -> dict:
    """The stage options of the first run, so the retrained engine differs only by its data."""
    return dict(outputs.get("_config", {}).get(stage, {}))


def print_items(httpx, url: str, rows: list[tuple]) -> None:
    """One line per answered item, with what the catalog knows of it."""
    info = httpx.post(f"{url}/items", json={"items": [r[0] for r in rows]}, timeout=30) if rows else None
    details = {str(x["item"]): x for x in info.json()["items"]} if info is not None and info.status_code == 200 else {}
    for rank, (item, score, engines) in enumerate(rows, 1):
        d = details.get(str(item), {})
        what = list(dict.fromkeys(str(d[k]) for k in ("title", "category", "brand") if d.get(k)))  # no repeats
        what += [f"${d['price']:.2f}"] if "price" in d else []
        via = f"  [{', '.join(engines)}]" if engines else ""
        print(f"  {rank}. {item}  {' · '.join(what)}  score {score:.3f}{via}")


if __name__ == "__main__":
    sys.exit(main())
