"""The parts of bench/scale.py that run in their own processes, and the memory sampler that watches them.

    python -m bench.scale_parts pipeline <recsys pipeline options>     # the pipeline, one worker per stage
    python -m bench.scale_parts serve --home H --dataset D --out F.json  # /recommend, /similar: exact, ANN

Memory: `TreeSampler` sums the PSS (proportional set size: shared pages split between the processes that
map them, /proc/<pid>/smaps_rollup) of a process and all its descendants every `period_s`. A Ray run
started by the process (`ray.init(address="local")`) has its GCS, raylet and every worker below it, so
the sum counts all of Ray, not only the driver, and nothing of other Ray instances on the machine. A
process once seen running a pipeline stage (process title `ray::stage:<name>`) and its descendants are
also summed per stage, for as long as they live; `pipeline_main` gives every stage a worker of its own,
so no stage's figure holds another's memory.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

STAGE_VAR = "RECSYS_BENCH_STAGE"


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(stat.parent.name))
    return kids


def _pss_kb(pid: int) -> int:
    """PSS in kB (RSS where smaps_rollup is unreadable); 0 for a process that is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError):
        return 0


def _stage_of(pid: int) -> str | None:
    """The stage a Ray worker runs now, from its process title (`ray::stage:<name>`), else None."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return None
    return title.split()[0][len("ray::stage:"):] if title.startswith("ray::stage:") else None


class TreeSampler:
    """Peak summed PSS (GB) of `pid` and its descendants, in all and per stage, sampled in a thread."""

    def __init__(self, pid: int, period_s: float = 0.5):
        self.pid, self.period_s = pid, period_s
        self.peak_gb, self.stage_peak_gb, self.samples = 0.0, {}, 0
        self._stages: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        kids, todo, total, per = _children(), [(self.pid, None)], 0, {}
        while todo:  # depth first; a stage's descendants count for the stage
            p, stage = todo.pop()
            stage = stage or self._stages.get(p) or _stage_of(p)
            if stage:
                self._stages[p] = stage  # sticky: the worker stays the stage's once the task ends
            kb = _pss_kb(p)
            total += kb
            if stage:
                per[stage] = per.get(stage, 0) + kb
            todo.extend((c, stage) for c in kids.get(p, []))
        self.samples += 1
        self.peak_gb = max(self.peak_gb, total / 2**20)
        for s, kb in per.items():
            self.stage_peak_gb[s] = max(self.stage_peak_gb.get(s, 0.0), kb / 2**20)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_sampled(cmd: list[str], log: Path, env: dict | None = None, timeout_s: float | None = None) -> dict:
    """Run `cmd` (niced as this process) with output to `log`; seconds, peak PSS of its tree, rc."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        full = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}  # None: unset
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=full,
                                start_new_session=True)  # its own group: a timeout ends all of it
        with TreeSampler(proc.pid) as mem:
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 15)
                rc = proc.wait()
                rc = rc if rc else 124
    return {"seconds": time.perf_counter() - t0, "peak_gb": mem.peak_gb, "stage_peak_gb": mem.stage_peak_gb,
            "samples": mem.samples, "rc": rc}


def pipeline_main(argv: list[str]) -> int:
    """`recsys pipeline` with each stage in a worker of its own: a stage-specific env var gives each stage its
    own runtime_env, so Ray never reuses one stage's worker (and its memory) for another, and the sampler
    can tell the stages apart."""
    import dataclasses

    from trainers import pipeline

    pipeline.STAGES = tuple(dataclasses.replace(s, env={**s.env, STAGE_VAR: s.name}) for s in pipeline.STAGES)
    return pipeline.main(argv)


def _copy_with_ann(uri: str, folder: Path, ann: bool) -> str | None:
    """The registered engine re-saved with retrieval forced exact or through the HNSW index (models/ann.py);
    engines without an `ann` setting are served from the registry as they are; None when not registered."""
    from models.base import Engine
    from reccore import tracking

    name = uri[len("models:/"):].split("@")[0]
    if tracking.model_version(name) is None:
        print(f"[serve] {uri} is not registered (stage not run): role left out", flush=True)
        return None
    engine = Engine.load(tracking.resolve_artifact(uri))
    if getattr(engine.config, "ann", None) is None:
        return uri
    engine.config.ann.min_items = 1 if ann else engine.n_items + 1
    return str(engine.save(folder))


def serve_main(argv: list[str]) -> int:
    """Deploy the registry's engines twice (exact, then ANN retrieval) and time /recommend and /similar."""
    import argparse
    import asyncio
    import shutil
    import tempfile

    p = argparse.ArgumentParser(prog="python -m bench.scale_parts serve")
    p.add_argument("--dataset", required=True, help="the prepared dataset folder requests are drawn from")
    p.add_argument("--out", required=True, help="JSON file of the figures")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=1)
    a = p.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")  # as `recsys serve` runs
    import ray
    from ray import serve

    from bench.serve_load import _free_port, _load, request_bodies
    from recdata.dataset import PreparedDataset
    from serve_app.run import deploy, load_config

    ds = PreparedDataset.load(a.dataset)
    rec, sim = request_bodies(ds, a.requests, seed=1)
    tmp = Path(tempfile.mkdtemp(prefix="scale-serve-"))
    roles = {"sequence": "models:/sasrec@champion", "discovery": "models:/discovery@champion",
             "similarity": "models:/content@champion", "popularity": "models:/popularity@champion"}
    out: dict = {"items": ds.catalog.n_items, "requests": a.requests, "concurrency": a.concurrency}
    from reccore import tracking

    decision = "models:/dqn@champion" if tracking.model_version("dqn") else None
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=str(tmp / "ray"), logging_level="ERROR",
             namespace="serve")
    base = None
    try:
        for mode in ("exact", "ann"):
            engines = {r: _copy_with_ann(u, tmp / mode / r, mode == "ann") for r, u in roles.items()}
            config = load_config(engines=engines, decision=decision, port=_free_port(),
                                 args={"reload_s": 0, "events_dir": str(tmp / "events")})
            base = deploy(config)
            for name, bodies in (("recommend", rec), ("similar", sim)):
                asyncio.run(_load(f"{base}/{name}", bodies[:20], a.concurrency))  # warm-up
                r = asyncio.run(_load(f"{base}/{name}", bodies, a.concurrency))
                out.update({f"{name}_{mode}_p50_ms": r["p50_ms"], f"{name}_{mode}_p99_ms": r["p99_ms"],
                            f"{name}_{mode}_failed": r["failed"], f"{name}_{mode}_degraded_share": r["degraded_share"]})
                print(f"[serve] {mode} /{name}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                      f"{r['failed']} failed, degraded {r['degraded']}", flush=True)
            serve.shutdown()
            base = None
    finally:
        if base:  # a failed run: its app is still up
            serve.shutdown()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    Path(a.out).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    cmd, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd not in ("pipeline", "serve"):
        sys.exit("usage: python -m bench.scale_parts pipeline|serve ...")
    sys.exit(pipeline_main(rest) if cmd == "pipeline" else serve_main(rest))
