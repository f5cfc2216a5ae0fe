"""`make demo`: the whole product on the embedded default data.

1. writes a synthetic REES46-schema event log (recdata.synthetic, calibrated on the REES46 sample),
2. runs the training pipeline on it (every engine, registered in MLflow),
3. prints the evaluation table (full ranking, popularity beside),
4. serves the engines with Ray Serve and answers a sample request.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROW_KEYS = ("test_hr@10", "test_ndcg@10", "test_hr@20", "test_ndcg@20", "test_coverage@10")


def results_table(outputs: dict) -> str:
    rows = {name: out for name, out in outputs.items() if any(k in out for k in ROW_KEYS)}
    width = max([len(n) for n in rows] + [10])
    lines = ["test split: leave-one-out, full ranking over all items, seen items filtered",
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

    from recdata.synthetic import SyntheticConfig, write_csv
    from trainers import tracking
    from trainers.pipeline import load_pipeline_config, run_pipeline

    data = tracking.work_dir() / "demo" / f"synthetic-u{args.users}-i{args.items}-s{args.seed}.csv"
    if not data.exists():
        summary = write_csv(SyntheticConfig(n_users=args.users, n_items=args.items, seed=args.seed), data)
        print(f"[demo] synthetic log: {summary['rows']:,} events, {args.users:,} users -> {data}", flush=True)
    outputs = run_pipeline({"fmt": "rees46", "path": str(data), "load_kwargs": {}},
                           load_pipeline_config(args.config), force=args.force)
    print()
    print(results_table(outputs))
    print(f"\nMLflow: mlflow ui --backend-store-uri {tracking.tracking_uri()}")
    try:
        from serve_app.run import demo_request
    except ImportError:
        print("[demo] serving is not part of this build yet")
        return 0
    return demo_request(outputs, keep_serving=args.keep_serving)


if __name__ == "__main__":
    sys.exit(main())
