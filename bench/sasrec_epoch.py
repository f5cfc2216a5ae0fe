"""One SASRec training epoch with the full-softmax CE loss on a large catalog: seconds and peak RSS.

    python -m bench.sasrec_epoch --format sasrec --path ../shared/data/amazon-sports
    python -m bench.sasrec_epoch --synth-users 40000 --synth-items 50000      # REES46-schema synthetic log

The issue-17 bar: <= 3 minutes and <= 4 GB peak RSS for one CE epoch on both. The settings are the
data-derived ones (models/sasrec/defaults.py) with the loss forced to `ce`, since on a 30-minute budget
the derivation picks the sampled loss there; no validation runs, so the epoch is training alone. Peak
RSS is the process's high-water mark over the epoch (VmHWM, reset just before `fit`: the data and the
imports stay counted, their own transient peaks do not). Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.sasrec_epoch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", default="sasrec", help="input format of --path")
    p.add_argument("--path", help="data file or folder (or use --synth-users/--synth-items)")
    p.add_argument("--synth-users", type=int, help="generate a synthetic REES46-schema log of this many users")
    p.add_argument("--synth-items", type=int, default=50_000, help="... over this many items")
    p.add_argument("--loss", default="ce", help="loss to time (ce, sampled, bce)")
    a = p.parse_args(argv)
    from models.sasrec import SasrecEngine
    from models.sasrec.defaults import derive_config
    from reccore import logs, tracking
    from recdata.dataset import prepare

    logs.configure(logs.verbose())
    if a.synth_users:
        from recdata.synthetic import SyntheticConfig, write_csv

        path = tracking.work_dir() / "bench" / f"synthetic-u{a.synth_users}-i{a.synth_items}.csv"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_csv(SyntheticConfig(n_users=a.synth_users, n_items=a.synth_items, seed=0), path)
        fmt, name = "rees46", path.stem
    elif a.path:
        path, fmt, name = Path(a.path), a.format, Path(a.path).name
    else:
        p.error("give --path or --synth-users")
    ds = prepare(fmt, path, cache_dir=tracking.work_dir() / "prepared")
    cfg, reasons = derive_config(ds.train, None, loss=a.loss, epochs=1)
    print(f"{name}: {ds.catalog.n_users:,} users, {ds.catalog.n_items:,} items, {len(ds.train.frame):,} training "
          f"rows; settings derived from the data, loss forced to {a.loss}:\n" + "\n".join(f"  - {r}" for r in reasons))
    engine = SasrecEngine(cfg, ds.catalog)
    with open("/proc/self/clear_refs", "w") as f:  # Linux: reset VmHWM to the current RSS
        f.write("5")
    rss_before = _status_kb("VmRSS:") / 2**20
    t0 = time.perf_counter()
    engine.fit(ds.train, None)
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM:") / 2**20
    rec = engine.history[-1]
    out = {"dataset": name, "users": ds.catalog.n_users, "items": ds.catalog.n_items, "loss": a.loss,
           "max_len": cfg.max_len, "hidden": cfg.hidden, "batch": cfg.batch, "steps": rec["steps"],
           "epoch_seconds": round(seconds, 1), "peak_rss_gb": round(peak, 2), "rss_before_fit_gb": round(rss_before, 2),
           "train_loss": round(rec["loss"], 4)}
    print(f"\n{'dataset':<28}{'items':>8}{'steps':>7}{'epoch s':>9}{'peak RSS GB':>13}  (targets: <= 180 s, <= 4 GB)")
    print(f"{name:<28}{out['items']:>8,}{out['steps']:>7}{seconds:>9.1f}{peak:>13.2f}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
