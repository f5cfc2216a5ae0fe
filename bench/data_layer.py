"""Data layer benchmark: loader throughput on the real data, streaming memory on a large REES46-schema
file, and the popularity baseline on every dataset (full ranking, leave-one-out).

    python -m bench.data_layer [--rows 2000000]

Memory: the REES46 loader runs in a fresh process on a synthetic file of `--rows` rows; its peak RSS
above the process's own baseline (imports) is compared with the file size. Last line: JSON figures.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from models.popularity import PopularityEngine
from recdata.dataset import PreparedDataset, encode, leave_one_out
from recdata.evaluation import evaluate, format_table
from recdata.loaders import load
from recdata.synthetic import SyntheticConfig, write_csv

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()

_MEASURE = r"""
import sys, time
from recdata.loaders import load_rees46


def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))


# Start the peak counter here (Linux: writing 5 to clear_refs resets VmHWM to the current RSS), so
# the import's own transient peak does not hide the loader's; ru_maxrss cannot be reset.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status("VmRSS:")
t = time.perf_counter()
log = load_rees46(sys.argv[1], chunksize=int(sys.argv[2]))
dt = time.perf_counter() - t
peak = status("VmHWM:")
print(len(log.events), log.bad_rows.total, dt, (peak - base) / 1024, log.events.memory_usage(deep=True).sum() / 2**20)
"""


def streaming_memory(rows: int, chunksize: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.csv"
        users = max(100, rows // 27)  # ~8 sessions x ~3.4 events per synthetic user
        write_csv(SyntheticConfig(n_users=users, n_items=max(1000, users // 10), seed=1), path)
        size_mb = path.stat().st_size / 2**20
        out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(chunksize)], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    n, bad, secs, peak_mb, table_mb = int(out[0]), int(out[1]), float(out[2]), float(out[3]), float(out[4])
    return {"rows": n, "bad_rows": bad, "file_mb": size_mb, "peak_rss_above_baseline_mb": peak_mb,
            "events_table_mb": table_mb, "seconds": secs, "rows_per_s": n / secs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000, help="rows of the synthetic file for the memory test")
    p.add_argument("--chunksize", type=int, default=500_000)
    args = p.parse_args(argv)
    figures: dict = {}
    rows = {}
    datasets = [("ml-1m", "sasrec", SHARED / "ml-1m"), ("ml-100k", "recbole", SHARED / "ml-100k"),
                ("rees46-head", "rees46", SHARED / "rees46-oct2019-head"),
                ("amazon-toys", "sasrec", SHARED / "amazon-toys"),
                ("amazon-sports", "sasrec", SHARED / "amazon-sports")]
    print(f"{'dataset':<12} {'rows':>10} {'users':>7} {'items':>7} {'bad':>5} {'load s':>7} {'rows/s':>10}")
    for name, fmt, path in datasets:
        if not path.exists():
            print(f"{name:<12} skipped: {path} absent")
            continue
        t = time.perf_counter()
        log = load(fmt, path)
        secs = time.perf_counter() - t
        s = log.stats()
        print(f"{name:<12} {s['rows_read']:>10,} {s['users']:>7,} {s['items']:>7,} {s['bad_rows']:>5} "
              f"{secs:>7.2f} {s['rows_read'] / secs:>10,.0f}")
        catalog, inter = encode(log)
        ds = PreparedDataset(catalog, leave_one_out(inter), {"split": "loo"})
        pop = PopularityEngine(catalog=catalog).fit(ds.train)
        t = time.perf_counter()
        rows[name] = evaluate(pop, ds, "test")
        rows[name]["eval_s"] = time.perf_counter() - t  # every test user, full ranking
        figures[f"{name}_pop_eval_s"] = rows[name]["eval_s"]
        figures[f"{name}_repeat_rows"] = int(inter.frame["repeat"].sum())
        figures[f"{name}_load_rows_per_s"] = s["rows_read"] / secs
        figures[f"{name}_pop_hr@10"] = rows[name]["hr@10"]
        figures[f"{name}_pop_ndcg@10"] = rows[name]["ndcg@10"]
    print()
    print(format_table(rows, ["hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10", "users", "eval_s"],
                       "popularity, leave-one-out, full ranking, seen filtered, ties against the target"))
    print()
    mem = streaming_memory(args.rows, args.chunksize)
    print(f"REES46 streaming ({mem['rows']:,} rows, {mem['file_mb']:.0f} MB file, chunks of {args.chunksize:,}): "
          f"peak RSS +{mem['peak_rss_above_baseline_mb']:.0f} MB (events table {mem['events_table_mb']:.0f} MB), "
          f"{mem['rows_per_s']:,.0f} rows/s")
    figures.update({f"stream_{k}": v for k, v in mem.items()})
    figures["stream_peak_over_file"] = mem["peak_rss_above_baseline_mb"] / mem["file_mb"]
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
