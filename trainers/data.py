"""`recsys data stats|prepare|synth`: look at an event log, cache it prepared, or make one.

    recsys data stats --format rees46 --path ../shared/data/rees46-oct2019-head [--json]
    recsys data prepare --format sasrec --path ../shared/data/ml-1m [--split loo|users]
    recsys data prepare --format rees46 --path shards/ --engine ray   (Ray Data: parallel, bounded memory)
    recsys data synth --users 2000 --out .recsys/synthetic.csv
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recdata import synthetic
from recdata.dataset import ENGINES, prepare_folder
from recdata.loaders import load
from recdata.schema import DataError
from trainers.common import add_data_args, load_kwargs, prepared_cache


def stats(args: argparse.Namespace) -> int:
    log = load(args.fmt, args.path, **load_kwargs(args))
    s = log.stats()
    print(f"source        {s['source']}")
    print(f"rows read     {s['rows_read']:,}")
    print(f"users         {s['users']:,}")
    print(f"items         {s['items']:,} with events ({s['catalog_items']:,} in the item table)")
    print(f"interactions  {s['interactions']:,}")
    for name, n in s["event_types"].items():
        print(f"  {name:<11} {n:,}")
    print(log.bad_rows.summary())
    if args.json:
        print(json.dumps({k: s[k] for k in ("users", "items", "interactions", "bad_rows", "event_types",
                                            "rows_read", "bad_row_reasons")}))
    return 0


def prepare_cmd(args: argparse.Namespace) -> int:
    # prepare_folder: the Ray Data path never brings the events into this process.
    folder, m = prepare_folder(args.fmt, args.path, args.cache or prepared_cache(), split=args.split,
                               engine=args.engine, **load_kwargs(args))
    print(f"prepared {m['users']:,} users, {m['items']:,} items, {m['interactions_encoded']:,} interactions "
          f"({m['split']} split, {m.get('engine', 'pandas')}) -> {folder}")
    if m.get("bad_rows"):
        print(f"bad rows: {m['bad_rows']:,} kept out: {m['bad_row_reasons']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stats", help="users, items, interactions, event types and the bad-row report")
    add_data_args(s)
    s.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    s.set_defaults(func=stats)
    pr = sub.add_parser("prepare", help="encode + split + cache as Parquet")
    add_data_args(pr)
    pr.add_argument("--split", choices=("loo", "users"), default="loo")
    pr.add_argument("--cache", type=Path, default=None)
    pr.add_argument("--engine", choices=ENGINES, default="auto",
                    help="pandas: in this process; ray: Ray Data (one task per input file, users bucketed by "
                         "hash; the same prepared data); auto (default): ray for one REES46 input of at least "
                         "$RECSYS_RAY_PREPARE_BYTES bytes (default 2 GiB), else pandas")
    pr.set_defaults(func=prepare_cmd)
    sub.add_parser("synth", help="synthetic REES46-schema log (`recsys data synth --help` for options)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["synth"]:  # its options are recdata.synthetic's own
        try:
            synthetic.main(argv[1:])
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
