"""Decision-engine training throughput: wall time to the same greedy return, the 2026-11-26 setup against
the current one (issue 20).

    python -m bench.rl_throughput                       # 15 min per setup on the single-session simulator
    python -m bench.rl_throughput --minutes 10 --sim sessions_max=8 --sim return_rate=0.6

Setups (train_dqn options; everything else is train_dqn's defaults, the same network and seed):
    before   --vectorize sync   --envs-per-runner 8   --training-intensity 4 --batch 128
             gymnasium's SyncVectorEnv over one-shopper envs: the configuration that measured ~116 env steps/s
    now      the trainer's current defaults (a natively vectorized env; see --now to try others)
Each setup trains for --minutes of wall clock (in the driver, as `python -m trainers.train_dqn` does with
0 env runners); every --eval-every seconds of training the learner's Q-network is exported and evaluated
greedily on --eval-episodes episodes of the vectorized simulator (seed held out from training; the
evaluation's time is not counted). The target return is 95% of `before`'s best evaluation; the figure is
`before`'s wall time to its best over `now`'s wall time to reach the target (the speed-up). Also: env steps/s
and learner updates/s of each setup. Both setups run in this process, one after the other, so their
ratio is measured under the same load. The last line is JSON.
"""
from __future__ import annotations

import os

os.environ.setdefault("RLLIB_TEST_NO_TF_IMPORT", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from envs.env import response_prior  # noqa: E402
from envs.policies import ci95, dqn_actor, evaluate_policy  # noqa: E402
from models.dqn.policy import DecisionPolicy  # noqa: E402
from reccore import logs  # noqa: E402
from trainers.dqn_selection import export_policy  # noqa: E402
from trainers.train_dqn import build_config, metric, parse_args, prepare_env_config  # noqa: E402

BEFORE = ["--vectorize", "sync", "--envs-per-runner", "8", "--training-intensity", "4", "--batch", "128"]


def run_setup(name: str, flags: list[str], common: list[str], minutes: float, eval_every: float,
              eval_episodes: int, work: Path) -> dict:
    """Train one setup for `minutes` of wall clock; greedy evaluations on the way."""
    args = parse_args([*common, *flags, "--out", str(work / name), "--register", ""])
    env_config, um, sim_cfg = prepare_env_config(args, work / name)
    algo = build_config(env_config, args).build_algo()
    curve, train_s, next_eval = [], 0.0, eval_every
    steps = updates = 0
    try:
        while train_s < 60 * minutes and steps < args.timesteps:
            t0 = time.perf_counter()
            result = algo.train()
            train_s += time.perf_counter() - t0
            steps = int(metric(result, "env_runners", "num_env_steps_sampled_lifetime", default=0))
            updates = int(metric(result, "learners", "default_policy", "num_module_steps_trained_lifetime",
                                 default=0) / max(args.batch, 1))
            if train_s >= next_eval or train_s >= 60 * minutes or steps >= args.timesteps:
                next_eval = train_s + eval_every
                policy = DecisionPolicy.load(export_policy(algo, um, work / name / "policy",
                                                          prior=response_prior(env_config)))
                ev = evaluate_policy(um, sim_cfg, dqn_actor(policy), eval_episodes, seed=777)["return"]
                curve.append({"seconds": train_s, "steps": steps, "updates": updates,
                              "return": float(ev.mean()), "ci95": ci95(ev)})
                print(f"  {name:7s} {train_s:7.0f}s  {steps:8d} env steps  {updates:6d} updates  "
                      f"greedy return {ev.mean():.4f} ± {ci95(ev):.4f}", flush=True)
    finally:
        algo.stop()
    return {"curve": curve, "env_steps_per_s": steps / train_s, "updates_per_s": updates / train_s,
            "train_seconds": train_s}


def time_to(curve: list[dict], target: float) -> float:
    """Training seconds at the first evaluation reaching `target` (inf if none did)."""
    return next((c["seconds"] for c in curve if c["return"] >= target), float("inf"))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.rl_throughput")
    p.add_argument("--minutes", type=float, default=15.0, help="training wall clock per setup")
    p.add_argument("--eval-every", type=float, default=60.0, help="training seconds between greedy evaluations")
    p.add_argument("--eval-episodes", type=int, default=3000)
    p.add_argument("--sim", action="append", default=[], metavar="FIELD=VALUE", help="as train_dqn --sim")
    p.add_argument("--now", default="", help="train_dqn flags of the 'now' setup beyond its defaults, e.g. "
                                             "'--envs-per-runner 64 --training-intensity 2'")
    p.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    p.add_argument("--d-model", default="32")
    p.add_argument("--timesteps", type=int, default=150_000, help="train_dqn --timesteps of both setups")
    args = p.parse_args(argv)
    import ray  # lazy: the options parse without Ray

    # the trainer's own --timesteps: epsilon anneals over 40% of it, so a longer nominal run would keep the
    # behaviour policy near random for the whole measurement; the wall clock (--minutes) may stop it first
    common = ["--timesteps", str(args.timesteps), "--d-model", args.d_model,
              *[x for s in args.sim for x in ("--sim", s)]]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 runtime_env=logs.ray_runtime_env({"RLLIB_TEST_NO_TF_IMPORT": "1", "OMP_NUM_THREADS": "1"}))
        try:
            res = {name: run_setup(name, flags, common, args.minutes, args.eval_every, args.eval_episodes, work)
                   for name, flags in (("before", BEFORE), ("now", args.now.split()))}
        finally:
            ray.shutdown()
    before, now = res["before"]["curve"], res["now"]["curve"]
    best = max(before, key=lambda c: c["return"])
    target = 0.95 * best["return"]
    t_before, t_now = time_to(before, target), time_to(now, target)
    speedup = t_before / t_now if np.isfinite(t_now) else 0.0
    print(f"\n{'setup':8s} {'env steps/s':>12s} {'updates/s':>10s} {'best return':>12s} {'s to target':>12s}")
    for name, r in res.items():
        b = max(r["curve"], key=lambda c: c["return"])
        print(f"{name:8s} {r['env_steps_per_s']:12.0f} {r['updates_per_s']:10.2f} {b['return']:12.4f} "
              f"{time_to(r['curve'], target):12.0f}")
    print(f"target {target:.4f} (95% of before's best {best['return']:.4f}); speed-up {speedup:.1f}x")
    out = {"target_return": target, "speedup": speedup, "before_seconds_to_target": t_before,
           "now_seconds_to_target": t_now, "now_flags": args.now, "minutes": args.minutes, "sim": args.sim,
           **{f"{name}_{k}": v for name, r in res.items() for k, v in r.items() if k != "curve"},
           **{f"{name}_best_return": max(c["return"] for c in r["curve"]) for name, r in res.items()},
           "load_avg": os.getloadavg()[0]}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
