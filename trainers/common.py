"""Options every job shares: where the data is and how to read it.

The one dialect of data flags, for every trainer and benchmark: `--format` (a loader name) and
`--path` (file or folder), plus `--map` / `--event-map` for the csv format.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from reccore.paths import work_dir
from recdata.loaders import FORMATS
from recdata.schema import DataError


def add_data_args(p: argparse.ArgumentParser, required: bool = True, default_format: str = "sasrec",
                  default_path: str | None = None, several: bool = False) -> None:
    """`--format` (dest `fmt`) and `--path`; with `required=False` they default to the given ones.
    With `several`, `--path` may repeat (base log + served events) and `args.path` is a list."""
    g = p.add_argument_group("data")
    g.add_argument("--format", dest="fmt", choices=FORMATS, default=None if required else default_format,
                   required=required, help="input format" + ("" if required else f" (default {default_format})"))
    g.add_argument("--path", required=required, default=None if required else default_path,
                   action="append" if several else "store",
                   help="file or folder of the event log" + ("" if required or not default_path
                                                            else f" (default {default_path})")
                   + ("; repeat it to train on several inputs, e.g. the base log and the served events "
                      "($RECSYS_HOME/events): events an earlier input holds are counted once" if several else ""))
    g.add_argument("--map", action="append", default=[], metavar="OURS=THEIRS",
                   help="csv format: column mapping, e.g. --map user=customer_id --map item=sku "
                        "(ours: user item ts event title brand category price)")
    g.add_argument("--event-map", action="append", default=[], metavar="THEIRS=OURS",
                   help="csv format: rename event values to view/cart/purchase, e.g. add_to_cart=cart")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise DataError(f"{what} entry {item!r} must look like name=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load_kwargs(args: argparse.Namespace) -> dict:
    """Loader keyword arguments implied by the CLI options (only the csv format takes mappings)."""
    if args.fmt != "csv":
        if args.map or args.event_map:
            raise DataError("--map/--event-map apply to --format csv only")
        return {}
    kw = {"mapping": _pairs(args.map, "--map")}
    if args.event_map:
        kw["event_map"] = _pairs(args.event_map, "--event-map")
    return kw


def prepared_cache() -> Path:
    return work_dir() / "prepared"


def ray_address(explicit: str | None = None) -> str:
    """Where a job's Ray lives: the address given, else the cluster `ray job submit` runs us on
    (RAY_ADDRESS), else a private local one -- never an unrelated `ray start` cluster that happens
    to run on the same machine (plain `ray.init()` would attach to it)."""
    return explicit or os.environ.get("RAY_ADDRESS") or "local"
