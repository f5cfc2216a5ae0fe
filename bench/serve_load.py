"""Load benchmark of the Serve application against a no-op Serve app, plus a replica-kill drill.

Besides latency and req/s over all answers (the bar), each run reports goodput (non-degraded 200s per
second), p99 over non-degraded answers and the degraded share, so an engine skipped under load cannot
pass for speed.

    python -m bench.serve_load                       # ML-1M popularity in every retrieval role
    python -m bench.serve_load --artifact sequence=models:/sasrec@champion --artifact discovery=...
    python -m bench.serve_load --registry --format rees46 --path .recsys/demo/synthetic-u1500-i800-s0.csv
                                    # the product graph: every engine + the DQN from the MLflow
                                    # registry (`make demo` fills it), requests from the data they know

Loopback only, bounded request counts. Deploys serve_app/config.yaml (its deployment options: CPUs,
max_ongoing_requests, autoscaling) with the artifacts given; a retrieval role with no artifact gets
the real popularity engine trained here on ML-1M as a stand-in (printed), so the full four-way
fan-out graph is what is measured. In the same Serve instance runs the no-op app (same proxy,
FastAPI ingress and request model, no engine): the floor. Requests use the README shape with real
ML-1M histories; clients are asyncio + httpx in this process.

Targets (issue 7): at 8 clients /recommend p99 <= 2.5x the no-op p99 and throughput >= 0.5x.
Drill: during a /recommend run at 8 clients, `ray.kill` one engine replica; count failed requests
(non-200), degraded answers, and the recovery time (kill -> last answer missing that engine).
Prints a table; the LAST line is one JSON object of the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from models.popularity import PopularityEngine
from recdata.dataset import prepare
from trainers.common import prepared_cache
from serve_app.prometheus import batch_stats
from serve_app.run import deploy, load_config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "ml-1m"
ROLES = ("sequence", "discovery", "similarity", "popularity")
EVENT_NAMES = ("view", "cart", "purchase")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def _load(url: str, bodies: list[dict], concurrency: int, duration_s: float | None = None,
                on_response=None) -> dict:
    """Send `bodies` (cycled when duration_s is set) with `concurrency` clients; latencies in ms."""
    import httpx

    lat, statuses, t_first, errors = [], [], time.perf_counter(), []
    clean = []  # per answer: a 200 that skipped no engine (goodput counts only these)
    degraded, rankers = {}, {}
    it = iter(range(10**9))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client):
        while True:
            i = next(it)
            if duration_s is None and i >= len(bodies):
                return
            if duration_s is not None and time.perf_counter() - t_first > duration_s:
                return
            t0 = time.perf_counter()
            try:
                r = await client.post(url, json=bodies[i % len(bodies)])
                status, payload = r.status_code, (r.json() if r.status_code == 200 else None)
                if status != 200 and len(errors) < 5:
                    errors.append(f"{status} {r.text[:300]}")
            except Exception as e:
                status, payload = -1, None
                if len(errors) < 5:
                    errors.append(f"{type(e).__name__}: {e}")
            t1 = time.perf_counter()
            lat.append((t1 - t0) * 1000)
            statuses.append(status)
            clean.append(status == 200 and not (payload or {}).get("degraded"))
            if payload:
                for d in payload.get("degraded", []):
                    degraded[d] = degraded.get(d, 0) + 1
                if "ranker" in payload:
                    rankers[payload["ranker"]] = rankers.get(payload["ranker"], 0) + 1
            if on_response is not None:
                on_response(t1, status, payload)

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        t_first = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t_first
    lat = np.asarray(lat)
    ok = np.asarray(statuses) == 200
    clean = np.asarray(clean, bool)
    return {"n": len(lat), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "rps": len(lat) / wall, "failed": int((~ok).sum()), "errors": errors, "degraded": degraded,
            "rankers": rankers,
            # Degraded answers can be fast (an engine skipped): report the clean ones apart.
            "goodput_rps": float(clean.sum()) / wall,
            "clean_p99_ms": float(np.percentile(lat[clean], 99)) if clean.any() else float("nan"),
            "degraded_share": float((ok & ~clean).sum()) / max(int(ok.sum()), 1)}


def busy_cpu_seconds() -> float | None:
    """Machine-wide CPU time spent busy (user+nice+system+irq+softirq), from /proc/stat; None off Linux.
    Idle, iowait and steal (time a noisy neighbour took) are left out, so the CPU cost per request
    holds steadier than throughput on a shared host."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far per process group (Serve replicas by deployment, the proxy, Ray's own
    daemons, this load generator), from /proc; {} off Linux. Dead processes drop out, so take deltas."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
            cmd = (stat.parent / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        fields = raw.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if cmd.startswith("ray::ServeReplica:"):
            name = "replica " + cmd.split(":")[-1]
        elif cmd.startswith("ray::"):
            name = cmd.split()[0].removeprefix("ray::")
        elif int(stat.parent.name) == os.getpid():
            name = "load generator (this process)"
        else:
            name = Path(cmd.split()[0]).name if cmd else "other"
        out[name] = out.get(name, 0.0) + seconds
    return out


def running_replicas() -> dict[str, int]:
    """RUNNING replicas per deployment of the recommender app (autoscaling changes them between runs)."""
    from ray import serve

    deps = serve.status().applications["recsys"].deployments
    return {name: int(d.replica_states.get("RUNNING", 0)) for name, d in deps.items()}


def build_artifacts(tmp: Path, data: Path, fmt: str = "sasrec") -> tuple[str, object]:
    ds = prepare(fmt, data, cache_dir=prepared_cache())  # $RECSYS_HOME/prepared
    engine = PopularityEngine(catalog=ds.catalog).fit(ds.train)
    return str(engine.save(tmp / "popularity")), ds


def request_bodies(ds, n: int, seed: int = 0, anonymous: bool = False) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    indptr, items, events = ds.train.sequences()
    has_events = bool(np.any(events > 0))
    users = rng.choice(len(indptr) - 1, n)
    rec = []
    for u in users:
        lo = max(indptr[u], indptr[u + 1] - 20)
        body = {"history": ds.catalog.item_raw(items[lo:indptr[u + 1]]).tolist()}
        if has_events:  # a shop log: each history item with its event type, as clients send them
            body["events"] = [EVENT_NAMES[int(e)] for e in events[lo:indptr[u + 1]]]
        rec.append({**body, **({} if anonymous else {"user_id": f"user_{u}"})})
    sim = [{"item": x, "k": 10} for x in ds.catalog.item_raw(rng.choice(ds.catalog.n_items, n)).tolist()]
    return rec, sim


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--path", default=str(DATA), help="the data requests are drawn from (default: ML-1M)")
    p.add_argument("--format", default="sasrec", help="loader of --path: sasrec | rees46 | recbole | csv")
    p.add_argument("--registry", action="store_true",
                   help="serve serve_app/config.yaml's registry URIs (models:/<engine>@champion) for every role "
                        "and the decision engine, instead of stand-ins; --artifact still overrides a role")
    p.add_argument("--artifact", action="append", default=[], metavar="ROLE=URI",
                   help="a trained engine for a role (decision=URI for the DQN policy)")
    p.add_argument("--requests", type=int, default=400, help="requests per (endpoint, concurrency) run")
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per concurrency; medians are reported")
    p.add_argument("--drill-seconds", type=float, default=15.0)
    p.add_argument("--kill", default="sequence", help="role whose replica the drill kills")
    p.add_argument("--roles", default=",".join(ROLES), help="retrieval roles to deploy (hop-count study)")
    p.add_argument("--max-inflight", type=int, help="override the YAML's ingress_batch.max_inflight")
    p.add_argument("--linger-ms", type=float, help="override the YAML's ingress_batch.linger_ms")
    p.add_argument("--in-ingress", help="override the YAML's in_ingress: retrieval roles hosted inside the "
                   "ingress, comma-separated; '' for none")
    p.add_argument("--replicas", type=int, help="fixed replica count for every deployment instead of the YAML's "
                   "autoscaling (replica-count study)")
    p.add_argument("--anonymous", action="store_true", help="requests without user_id (no session lookup)")
    p.add_argument("--events-drill", action="store_true", help="8 clients post events while the sessions "
                   "replica, then the ingress replica, are killed: acknowledged, stored, lost")
    p.add_argument("--swap-drill", action="store_true", help="promote a new version of --swap-role's model under "
                   "load at 8 clients: failed requests, seconds to swap, p99 during vs steady")
    p.add_argument("--swap-role", default="sequence", help="role whose registered model the swap drill promotes")
    p.add_argument("--events-seconds", type=float, default=10.0, help="length of the /events throughput run "
                   "and (x2) of each drill; 0 skips the throughput run")
    p.add_argument("--events-batch", type=int, default=50, help="events per POST /events/batch in the "
                   "throughput run (0: one per POST /events only)")
    p.add_argument("--reload-s", type=float, default=1.0, help="registry poll period of the app (args.reload_s)")
    p.add_argument("--serve-defaults", action="store_true",
                   help="leave RAY_SERVE_THROUGHPUT_OPTIMIZED unset (Serve's default data plane)")
    a = p.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback benchmark on a private cluster
    if not a.serve_defaults:  # what `recsys serve` runs with: direct gRPC between replicas etc.
        os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    import ray  # lazy: after the environment Ray reads at import is set (above)
    from ray import serve

    given = dict(s.split("=", 1) for s in a.artifact)
    decision = given.pop("decision", None)
    tmp = Path(tempfile.mkdtemp(prefix="rsvb"))
    pop, ds = build_artifacts(tmp, Path(a.path), a.format)
    roles = [r for r in a.roles.split(",") if r]
    if a.registry:  # the YAML's URIs, except where --artifact overrides
        yaml_args = load_config()["applications"][0]["args"]
        engines = {r: (given.get(r) or yaml_args["engines"].get(r)) if r in roles else None for r in ROLES}
        decision = decision or yaml_args.get("decision")
        stand_in = []
    else:
        engines = {r: (given.get(r) or pop) if r in roles else None for r in ROLES}
        stand_in = [r for r in roles if r not in given and r != "popularity"]
    rec_bodies, sim_bodies = request_bodies(ds, a.requests, anonymous=a.anonymous)
    swap_name = None
    if a.swap_drill:  # the role must follow a registry alias; a stand-in goes into a private store
        uri = str(engines.get(a.swap_role) or "")
        if uri.startswith("models:/") and "@" in uri:
            swap_name = uri[len("models:/"):].split("@")[0]
        else:
            from models.base import Engine
            from reccore import tracking

            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
            with tracking.run("bench-swap"):
                tracking.log_engine(Engine.load(engines.get(a.swap_role) or pop), "bench-swap")
            swap_name, engines[a.swap_role] = "bench-swap", "models:/bench-swap@champion"

    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=str(tmp / "ray"), logging_level="ERROR",
             namespace="serve", _metrics_export_port=(metrics_port := _free_port()),
             _system_config={"metrics_report_interval_ms": 1000})
    # Drill events go to a private log, never into the served-event log that retraining reads.
    overrides = {"reload_s": a.reload_s, "events_dir": str(tmp / "events")}
    if a.max_inflight or a.linger_ms is not None:
        yaml_batch = load_config()["applications"][0]["args"].get("ingress_batch") or {}
        overrides["ingress_batch"] = {**yaml_batch, **({"max_inflight": a.max_inflight} if a.max_inflight else {}),
                                      **({"linger_ms": a.linger_ms} if a.linger_ms is not None else {})}
    if a.in_ingress is not None:
        overrides["in_ingress"] = [r for r in a.in_ingress.split(",") if r]
    config = load_config(engines=engines, decision=decision, port=_free_port(), args=overrides)
    if a.replicas:
        for d in config["applications"][0]["deployments"]:
            d.pop("autoscaling_config", None)
            d["num_replicas"] = a.replicas
    noop = {"name": "noop", "route_prefix": "/noop", "import_path": "serve_app.builder:build_noop_app",
            "deployments": [{"name": "NoOp", "max_ongoing_requests": 64, "ray_actor_options": {"num_cpus": 0}}]}
    config["applications"].append(noop)
    base = deploy(config)
    rows, res = [], {}
    try:
        for c in [int(x) for x in a.concurrency.split(",")]:
            # Rounds alternate the endpoints, so a burst of noise from a neighbour on the shared host
            # hits the floor and the app alike; each figure is the median over the rounds.
            runs: dict[str, list[dict]] = {}
            for round_no in range(1, a.rounds + 1):
                for name, url, bodies in [("noop", base + "/noop/recommend", rec_bodies),
                                          ("recommend", base + "/recommend", rec_bodies),
                                          ("similar", base + "/similar", sim_bodies)]:
                    asyncio.run(_load(url, bodies[:20], 2))  # warm-up
                    if name == "recommend":  # let the warm-up's metrics reach the export first
                        time.sleep(2.5)
                    before = batch_stats(metrics_port) if name == "recommend" else None
                    cpu0, procs0 = busy_cpu_seconds(), process_cpu_seconds()
                    r = asyncio.run(_load(url, bodies, c))
                    cpu1, procs1 = busy_cpu_seconds(), process_cpu_seconds()
                    r["cpu_ms_by_process"] = {k: (v - procs0.get(k, 0.0)) * 1000 / max(r["n"], 1)
                                              for k, v in procs1.items() if v - procs0.get(k, 0.0) > 0}
                    r["cpu_ms"] = (cpu1 - cpu0) * 1000 / max(r["n"], 1) if cpu0 is not None else float("nan")
                    if before is not None:  # mean /recommend batch of this run (the ingress's counters)
                        time.sleep(2.5)
                        after = batch_stats(metrics_port)
                        r["mean_batch"] = (after[1] - before[1]) / max(after[0] - before[0], 1)
                        r["replicas"] = running_replicas()
                    runs.setdefault(name, []).append(r)
                    # One line per run, so a multi-minute bench is never silent (the table comes at the end).
                    print(f"[serve_load] {c} clients, round {round_no}/{a.rounds}, {name}: p50 {r['p50_ms']:.1f} ms, "
                          f"p99 {r['p99_ms']:.1f} ms, {r['rps']:.1f} req/s, {r['failed']} failed", flush=True)
            for name, rs in runs.items():
                r = {k: float(np.median([x[k] for x in rs]))
                     for k in ("p50_ms", "p99_ms", "rps", "cpu_ms", "goodput_rps", "clean_p99_ms", "degraded_share")}
                r.update(n=sum(x["n"] for x in rs), failed=sum(x["failed"] for x in rs),
                         errors=sum((x["errors"] for x in rs), []),
                         degraded={k: sum(x["degraded"].get(k, 0) for x in rs) for x in rs for k in x["degraded"]},
                         rankers={k: sum(x["rankers"].get(k, 0) for x in rs) for x in rs for k in x["rankers"]},
                         rounds=rs)
                if name == "recommend":
                    r["mean_batch"] = float(np.median([x["mean_batch"] for x in rs]))
                    noops = runs["noop"]
                    r["rps_ratios"] = [x["rps"] / y["rps"] for x, y in zip(rs, noops)]
                    r["p99_ratios"] = [x["p99_ms"] / y["p99_ms"] for x, y in zip(rs, noops)]
                    r["cpu_ratios"] = [x["cpu_ms"] / y["cpu_ms"] for x, y in zip(rs, noops)]
                res[(name, c)] = r
                rows.append(f"{name:<10} {c:>3} {r['n']:>6} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                            f"{r['rps']:>8.1f} {r['goodput_rps']:>8.1f} {r['clean_p99_ms']:>9.1f} "
                            f"{r['degraded_share']:>9.3f} {r['cpu_ms']:>7.1f} {r['failed']:>7}"
                            + (f" {r['mean_batch']:>10.2f}" if "mean_batch" in r else ""))
        drill = run_drill(base, rec_bodies, a.kill, a.drill_seconds) if a.drill_seconds > 0 else None
        loop = run_loop_drills(a, base, ds, rec_bodies, swap_name, tmp / "events")
    finally:
        serve.shutdown()
        ray.shutdown()

    c_hi = max(int(x) for x in a.concurrency.split(","))
    rec, nop, sim = res[("recommend", c_hi)], res[("noop", c_hi)], res[("similar", c_hi)]
    engines = {r: u for r, u in engines.items() if u}
    print(f"engines: {json.dumps(engines)}; stand-in popularity for {stand_in or 'none'}; "
          f"decision: {decision or 'none (blend)'}")
    print(f"{'endpoint':<10} {'clients':>3} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'goodput':>8} "
          f"{'clean p99':>9} {'degraded':>9} {'cpu ms':>7} {'failed':>7} {'mean batch':>10}")
    print("  (goodput: non-degraded 200s per second; clean p99: over non-degraded answers; degraded: share of the\n"
          "   200s that skipped an engine, median of the rounds. The bar stays on the all-answers figures.)")
    print("\n".join(rows))
    for (name, c), r in res.items():
        if r["degraded"] or r["rankers"]:
            print(f"  {name} @{c}: degraded answers per engine {r['degraded']}; rankers {r['rankers']}")
    print(f"at {c_hi} clients (medians of {a.rounds} rounds): "
          f"recommend p99 / noop p99 = {rec['p99_ms'] / nop['p99_ms']:.2f} "
          f"(target <= 2.5); recommend rps / noop rps = {rec['rps'] / nop['rps']:.2f} (target >= 0.5)")
    print(f"  per round: p99 ratios {[round(x, 2) for x in rec['p99_ratios']]}, "
          f"rps ratios {[round(x, 2) for x in rec['rps_ratios']]}, CPU-per-request ratios "
          f"{[round(x, 2) for x in rec['cpu_ratios']]}, degraded shares "
          f"{[round(x['degraded_share'], 3) for x in rec['rounds']]}\n  replicas after each /recommend round: "
          f"{[x['replicas'] for x in rec['rounds']]}\n  (cpu ms: machine-wide busy CPU per request, load generator "
          f"included; on a saturated host, throughput ratio ~ 1 / CPU ratio, and CPU is not stolen by neighbours)")
    print(f"CPU ms per request by process at {c_hi} clients (median of the rounds):")
    for name in ("noop", "recommend"):
        rs = res[(name, c_hi)]["rounds"]
        groups = sorted({k for x in rs for k in x["cpu_ms_by_process"]})
        med = {g: float(np.median([x["cpu_ms_by_process"].get(g, 0.0) for x in rs])) for g in groups}
        by_share = sorted(med.items(), key=lambda kv: -kv[1])
        print(f"  {name:<10} " + ", ".join(f"{g} {v:.1f}" for g, v in by_share if v >= 0.1))
    drill = drill or {"killed": None, "kill_at_s": 0.0, "requests": 0, "failed": 0, "errors": [], "degraded": 0,
                      "recovery_s": 0.0, "replica_back_s": 0.0}
    print(f"drill: killed {drill['killed']} at t={drill['kill_at_s']:.1f}s of a {a.drill_seconds:.0f}s run at 8 "
          f"clients: {drill['requests']} requests, {drill['failed']} failed, {drill['degraded']} degraded "
          f"(missing {a.kill}), recovery {drill['recovery_s']:.2f}s, replica back RUNNING after "
          f"{drill['replica_back_s']:.1f}s")
    for e in drill["errors"]:
        print(f"  drill failure: {e}")
    out = {
        "recommend_p50_ms": round(rec["p50_ms"], 2), "recommend_p99_ms": round(rec["p99_ms"], 2),
        "recommend_rps": round(rec["rps"], 1), "noop_p50_ms": round(nop["p50_ms"], 2),
        "noop_p99_ms": round(nop["p99_ms"], 2), "noop_rps": round(nop["rps"], 1),
        "similar_p50_ms": round(sim["p50_ms"], 2), "similar_p99_ms": round(sim["p99_ms"], 2),
        "similar_rps": round(sim["rps"], 1), "clients": c_hi,
        "recommend_goodput_rps": round(rec["goodput_rps"], 1), "recommend_clean_p99_ms": round(rec["clean_p99_ms"], 2),
        "recommend_degraded_share": round(rec["degraded_share"], 4),
        "recommend_degraded_share_rounds": [round(x["degraded_share"], 4) for x in rec["rounds"]],
        "similar_goodput_rps": round(sim["goodput_rps"], 1), "similar_degraded_share": round(sim["degraded_share"], 4),
        "failed_requests": rec["failed"] + sim["failed"] + nop["failed"],
        "p99_ratio": round(rec["p99_ms"] / nop["p99_ms"], 2), "rps_ratio": round(rec["rps"] / nop["rps"], 2),
        "rounds": a.rounds, "recommend_mean_batch": round(rec["mean_batch"], 2),
        "p99_ratio_rounds": [round(x, 2) for x in rec["p99_ratios"]],
        "rps_ratio_rounds": [round(x, 2) for x in rec["rps_ratios"]],
        "recommend_cpu_ms": round(rec["cpu_ms"], 2), "noop_cpu_ms": round(nop["cpu_ms"], 2),
        "cpu_ratio_rounds": [round(x, 2) for x in rec["cpu_ratios"]],
        "recommend_c1_p50_ms": round(res[("recommend", 1)]["p50_ms"], 2) if ("recommend", 1) in res else None,
        "noop_c1_p50_ms": round(res[("noop", 1)]["p50_ms"], 2) if ("noop", 1) in res else None,
        "drill_failed_requests": drill["failed"], "drill_degraded": drill["degraded"],
        "drill_requests": drill["requests"], "drill_recovery_s": round(drill["recovery_s"], 2),
        "drill_replica_back_s": round(drill["replica_back_s"], 2),
        "stand_in_roles": stand_in, "decision": bool(decision), "requests_per_run": a.requests,
        "anonymous": a.anonymous, "in_ingress": config["applications"][0]["args"].get("in_ingress"), "roles": roles,
        "recommend_degraded": rec["degraded"], "recommend_rankers": rec["rankers"],
        "throughput_optimized": os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1",
        **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in loop.items()},
    }
    if "events_rps" in loop:
        out["events_rps_ratio"] = round(loop["events_rps"] / rec["rps"], 2)
        out["events_single_rps_ratio"] = round(loop["events_single_rps"] / rec["rps"], 2)
        print(f"events, stored and acknowledged, at {c_hi} clients vs /recommend {rec['rps']:.1f} req/s: "
              f"one per POST /events {loop['events_single_rps']:.1f}/s ({out['events_single_rps_ratio']:.2f}x, "
              f"p99 {loop['events_single_p99_ms']:.1f} ms)")
        if loop["events_batch"]:
            print(f"  {loop['events_batch']} per POST /events/batch {loop['events_rps']:.1f}/s "
                  f"({out['events_rps_ratio']:.2f}x, target >= 2; p99 {loop['events_batch_p99_ms']:.1f} ms a batch)")
    if "events_acked" in loop:
        print(f"events drill (sessions replica killed, then the ingress): {loop['events_acked']} acknowledged, "
              f"{loop['events_stored']} of them stored, lost {loop['events_lost']} (target 0); "
              f"{loop['events_failed']} refused (not acknowledged), {loop['events_stored_unacked']} stored unacked")
    if "swap_failed_requests" in loop:
        print(f"swap drill ({a.swap_role} v{loop['swap_from']} -> v{loop['swap_to']}, reload_s {a.reload_s}): "
              f"{loop['swap_failed_requests']} failed of {loop['swap_requests']} during the swap (target 0), "
              f"swapped in {loop['swap_seconds']} s; p99 {loop['swap_p99_ms']:.1f} ms during vs "
              f"{loop['steady_p99_ms']:.1f} ms steady")
    print(json.dumps(out))
    return out


def run_drill(base: str, bodies: list[dict], role: str, seconds: float) -> dict:
    """Kill one replica of `role` 2 s into a /recommend run at 8 clients."""
    import threading

    import ray
    from ray import serve

    events: list[tuple[float, int, bool]] = []

    def on_response(t, status, payload):
        events.append((t, status, bool(payload and role in payload.get("degraded", []))))

    state = {}

    def killer():
        time.sleep(2.0)
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith(f"SERVE_REPLICA::recsys#{role}#")]
        state["killed"] = names[0].split("#")[-1] if names else None
        state["t_kill"] = time.perf_counter()
        if names:
            ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        # Back when the deployment reports a healthy replica again (polled at 10 Hz).
        while time.perf_counter() - state["t_kill"] < 60:
            fresh = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith(f"SERVE_REPLICA::recsys#{role}#") and a["name"] not in names]
            dep = serve.status().applications["recsys"].deployments[role]
            running = sum(v for k, v in dep.replica_states.items() if str(k).endswith("RUNNING"))
            if fresh and str(dep.status).endswith("HEALTHY") and running >= 1:
                break
            time.sleep(0.1)
        state["t_back"] = time.perf_counter()

    th = threading.Thread(target=killer)
    t0 = time.perf_counter()
    th.start()
    r = asyncio.run(_load(base + "/recommend", bodies, 8, duration_s=seconds, on_response=on_response))
    th.join()
    t_kill = state["t_kill"]
    degraded_after = [t for t, s, d in events if d and t >= t_kill]
    return {"killed": f"{role} replica {state['killed']}", "kill_at_s": t_kill - t0, "requests": r["n"],
            "failed": r["failed"], "errors": r["errors"], "degraded": sum(d for _, _, d in events),
            "recovery_s": (max(degraded_after) - t_kill) if degraded_after else 0.0,
            "replica_back_s": state.get("t_back", t_kill) - t_kill}


def run_loop_drills(a, base: str, ds, rec_bodies: list[dict], swap_name: str | None, events_dir: Path) -> dict:
    """The closed-loop drills (bench/serve_drills.py): /events throughput, the swap under load, and the
    kills of the sessions and ingress replicas (last: they take the app down for a while)."""
    from bench import serve_drills

    users = ds.catalog.user_ids[:2000].tolist()
    items = ds.catalog.item_ids[:2000].tolist()
    out: dict = {}
    if a.events_seconds > 0 and (a.events_drill or a.swap_drill):
        out.update(serve_drills.events_throughput(base, users, items, a.events_seconds, a.events_batch))
    if a.swap_drill and swap_name:
        out.update(serve_drills.swap_drill(base, rec_bodies, a.swap_role, swap_name, 2 * a.events_seconds))
    if a.events_drill:
        out.update(serve_drills.events_drill(base, users, items, events_dir, 2 * a.events_seconds))
    return out


if __name__ == "__main__":
    main()
