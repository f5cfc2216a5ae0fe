"""Benchmark the decision engine against greedy baselines on the calibrated simulator.

    python -m bench.rl_policies        # uses $RECSYS_HOME/dqn (train first: python -m trainers.train_dqn)
    python -m bench.rl_policies --episodes 20000 --rllib-throughput

Every policy runs the same N sessions (same simulator seed -> same shoppers and session starts):
random, popularity, greedy by each engine's score, greedy by the blended score, a *myopic oracle* that
sees the hidden state (true click/convert probabilities) and maximizes the immediate expected reward
(context: how much is there to gain without planning), and the trained DQN. Mean return, purchases
and session length with 95% CIs (normal approximation), DQN's gain over the best greedy baseline with
a 95% CI. Also: the sim-to-real gap (simulated sessions under the logging policy vs held-out real
sessions), an IPS / SNIPS estimate of the DQN's value from logged sessions of the logging policy,
simulator throughput, RLlib sampling throughput with 0/1/2 env runners. The last line is JSON.
"""
from __future__ import annotations

import os

os.environ.setdefault("RLLIB_TEST_NO_TF_IMPORT", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.spatial.distance import jensenshannon  # noqa: E402

from envs.policies import blended, ci95, dqn_actor, evaluate_policy, greedy  # noqa: E402
from envs.shopping import RewardConfig, ShopperSim, SimConfig, logging_policy  # noqa: E402
from envs.user_model import UserModel  # noqa: E402
from models.dqn.policy import DecisionPolicy  # noqa: E402
from reccore import tracking  # noqa: E402
from reccore.constants import ENGINE_ROLES as ENGINES  # noqa: E402
from trainers.train_dqn import build_config, parse_args  # noqa: E402


def myopic_oracle(sim: ShopperSim) -> np.ndarray:
    """Immediate expected reward from the hidden state (click prob, conversion prob, price value)."""
    n, K = sim.cand.shape
    value = np.zeros((n, K))
    rc, sh = sim.cfg.reward, sim.um.cal.purchase_share
    for k in range(K):
        it = sim.cand[:, k]
        pc = sim.click_prob(it)
        same = sim.um.item_cat[it] == sim.um.item_cat[sim.last]
        ni = np.where(same, sim.interest, sim.interest * sim.cfg.switch_keep)
        ni = ni + sim.alpha * (1 - ni)
        q = sim.conversion_prob(it, ni)
        value[:, k] = pc * ((1 - q) * rc.view + q * (sh * sim.purchase_value(it) + (1 - sh) * rc.cart))
    return value.argmax(1)


def sim_to_real_gap(um: UserModel, cfg: SimConfig, n: int = 5000, seed: int = 0) -> dict:
    """Simulated sessions under the logging policy vs held-out real sessions."""
    sim = ShopperSim(um, cfg, n=n, seed=seed)
    rng = np.random.default_rng(seed)
    sim.reset()
    items, events, eng = [sim.hist_items[:, -1].copy()], [np.zeros(n, np.int64)], np.ones(n)
    alive = np.ones(n, bool)
    while alive.any():
        a, _ = logging_policy(sim, rng)
        shown = sim.cand[np.arange(n), a]
        _, te, tr, resp = sim.step(a)
        keep = alive & (resp >= 0)
        items.append(shown[keep])
        events.append(resp[keep])
        eng += keep
        alive &= ~(te | tr)
    s_items, s_events = np.concatenate(items), np.concatenate(events)
    h = um.heldout
    st = h.groupby(["s", "i"], sort=False)["e"].max()
    r_items = st.index.get_level_values(1).to_numpy()
    r_events = st.to_numpy()
    r_len = st.groupby(level=0).size().to_numpy()

    def dist(x, n_bins):
        c = np.bincount(x, minlength=n_bins).astype(float)
        return c / max(c.sum(), 1)
    p_sim, p_real = dist(s_items, um.n_items), dist(r_items, um.n_items)
    js = jensenshannon(p_sim, p_real, base=2) ** 2  # scipy gives the distance: its square is the divergence
    c_sim, c_real = dist(um.item_cat[s_items], len(um.categories)), dist(um.item_cat[r_items], len(um.categories))
    mix = lambda e: np.bincount(np.asarray(e, np.int64), minlength=3)[:3] / max(len(e), 1)  # noqa: E731
    return {"item_js_divergence": float(js), "category_tv_distance": float(0.5 * np.abs(c_sim - c_real).sum()),
            "session_items_sim": float(eng.mean()), "session_items_real": float(r_len.mean()),
            "session_items_median_sim": float(np.median(eng)), "session_items_median_real": float(np.median(r_len)),
            "event_mix_sim": mix(s_events).round(4).tolist(), "event_mix_real": mix(r_events).round(4).tolist(),
            "heldout_sessions": int(len(r_len))}


def off_policy_estimate(um: UserModel, cfg: SimConfig, target_actor, n: int = 20000, seed: int = 7,
                        eps: float = 0.1) -> dict:
    """Log n sessions with the (stochastic) logging policy, then estimate the value of the target
    policy made eps-greedy (so its probabilities are non-zero) by per-decision IPS and SNIPS."""
    sim = ShopperSim(um, cfg, n=n, seed=seed)
    rng = np.random.default_rng(seed)
    sim.reset()
    K = cfg.n_candidates
    w = np.ones(n)
    ips, alive = np.zeros(n), np.ones(n, bool)
    snips_num, snips_den = [], []
    logged = np.zeros(n)
    while alive.any():
        target = target_actor(sim)
        a, mu = logging_policy(sim, rng)
        pi = np.where(a == target, 1 - eps + eps / K, eps / K)
        w = np.where(alive, w * pi / mu, w)  # ended sessions keep their final weight (reward 0 afterwards)
        r, te, tr, _ = sim.step(a)
        ips += alive * w * r
        logged += alive * r
        snips_num.append(np.where(alive, w * r, 0.0))
        snips_den.append(w.copy())
        alive &= ~(te | tr)
    # per-decision SNIPS: normalize the weights of each step by their mean over the n logged sessions
    snips = sum(num_t.sum() / max(den_t.sum() / n, 1e-12) for num_t, den_t in zip(snips_num, snips_den)) / n
    return {"ips": float(ips.mean()), "ips_ci95": ci95(ips), "snips": float(snips),
            "logging_value": float(logged.mean()), "episodes": n, "target_eps": eps}


def rllib_throughput(um_dir: str, sim_cfg: SimConfig, runners: int, seconds: float = 20.0) -> float:
    """Env steps/s that RLlib samples (learning on) with this many env runners; tiny network."""
    args = parse_args(["--num-env-runners", str(runners), "--timesteps", "100000", "--d-model", "32",
                       "--n-layers", "1"])
    sim = {"click_max": sim_cfg.click_max, "leave_scale": sim_cfg.leave_scale}
    cfg = build_config({"user_model": um_dir, "sim": sim, "seed": 0}, args)
    algo = cfg.build_algo()
    try:
        algo.train()  # warm-up (replay fill, JIT of the first batch)
        t0, s0 = time.perf_counter(), algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"), default=0)
        steps = 0
        while time.perf_counter() - t0 < seconds:
            res = algo.train()
            steps = res.get("env_runners", {}).get("num_env_steps_sampled_lifetime", 0)
        return float((steps - s0) / (time.perf_counter() - t0))
    finally:
        algo.stop()


def sim_steps_per_s(um: UserModel, cfg: SimConfig, n: int = 1024, steps: int = 200) -> float:
    """Vectorized simulator alone, one core: random actions, ended sessions restarted in place."""
    sim = ShopperSim(um, cfg, n=n, seed=0)
    sim.reset()
    rng = np.random.default_rng(0)
    acts = rng.integers(0, cfg.n_candidates, (steps, n))
    t0 = time.perf_counter()
    for t in range(steps):
        _, te, tr, _ = sim.step(acts[t])
        sim.reset(te | tr)
    return float(n * steps / (time.perf_counter() - t0))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.rl_policies")
    p.add_argument("--work", default=None, help="train_dqn's --out folder (default $RECSYS_HOME/dqn)")
    p.add_argument("--episodes", type=int, default=20000, help="sessions per policy (>= 500)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--rllib-throughput", action="store_true", help="also measure RLlib steps/s with 0/1/2 runners")
    args = p.parse_args(argv)
    if args.episodes < 500:
        raise SystemExit("--episodes must be >= 500 for the confidence intervals to mean something")
    work = Path(args.work) if args.work else tracking.work_dir() / "dqn"
    if not (work / "policy" / "manifest.json").exists():
        raise SystemExit(f"no trained policy in {work}/policy; run `python -m trainers.train_dqn` first")
    policy = DecisionPolicy.load(work / "policy")
    um = UserModel.load(work / "user_model")
    sc = policy.meta["sim_config"]
    cfg = SimConfig(**{k: (tuple(v) if k == "slots" else v) for k, v in sc.items() if k != "reward"})
    cfg.reward = RewardConfig(**sc["reward"])

    rng = np.random.default_rng(args.seed)
    policies = {"random": lambda s: rng.integers(0, cfg.n_candidates, s.n), "popularity": greedy(3)}
    for j, e in enumerate(ENGINES[:3]):
        policies[f"greedy_{e}"] = greedy(j)
    policies["greedy_blend"] = blended
    policies["myopic_oracle(hidden state)"] = myopic_oracle
    policies["dqn"] = dqn_actor(policy)
    res = {}
    print(f"{'policy':30s} {'return':>16s} {'purchases/session':>22s} {'session length':>18s}  "
          f"(N={args.episodes}, 95% CI)")
    for name, actor in policies.items():
        t0 = time.perf_counter()
        r = evaluate_policy(um, cfg, actor, args.episodes, seed=args.seed)
        res[name] = r
        print(f"{name:30s} {r['return'].mean():8.4f} ± {ci95(r['return']):.4f} {r['purchases'].mean():12.4f} ± "
              f"{ci95(r['purchases']):.4f} {r['length'].mean():9.3f} ± {ci95(r['length']):.3f}  "
              f"({time.perf_counter() - t0:.1f}s)")
    greedy_names = ["popularity"] + [f"greedy_{e}" for e in ENGINES[:3]] + ["greedy_blend"]
    best = max(greedy_names, key=lambda k: res[k]["return"].mean())
    d, b = res["dqn"]["return"], res[best]["return"]
    gain = d.mean() - b.mean()
    gain_ci = 1.96 * np.sqrt(d.var(ddof=1) / len(d) + b.var(ddof=1) / len(b))
    print(f"\nDQN vs best greedy ({best}): {gain:+.4f} ± {gain_ci:.4f} return ({100 * gain / b.mean():+.1f}% "
          f"[{100 * (gain - gain_ci) / b.mean():+.1f}%, {100 * (gain + gain_ci) / b.mean():+.1f}%])")

    gap = sim_to_real_gap(um, cfg)
    print("\nsim-to-real gap (logging policy vs held-out real sessions):")
    for k, v in gap.items():
        print(f"  {k:28s} {v}")
    ope = off_policy_estimate(um, cfg, dqn_actor(policy))
    print(f"\noff-policy estimate of the DQN (eps={ope['target_eps']}-greedy) from {ope['episodes']} logged sessions: "
          f"IPS {ope['ips']:.4f} ± {ope['ips_ci95']:.4f}, SNIPS {ope['snips']:.4f}; logging policy's own value "
          f"{ope['logging_value']:.4f}; simulated DQN value {d.mean():.4f}")
    sps = sim_steps_per_s(um, cfg)
    print(f"\nsimulator alone (vectorized, 1024 shoppers, 1 process): {sps:,.0f} env steps/s")
    thr = {}
    if args.rllib_throughput:
        import ray  # lazy: only the optional RLlib throughput study starts Ray

        ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"RLLIB_TEST_NO_TF_IMPORT": "1",
                                           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
        try:
            for nr in (0, 1, 2):
                thr[f"rllib_steps_per_s_{nr}_runners"] = rllib_throughput(str(work / "user_model"), cfg, nr)
                steps_per_s = thr[f"rllib_steps_per_s_{nr}_runners"]
                print(f"RLlib DQN training, {nr} env runner(s): {steps_per_s:.0f} env steps/s")
        finally:
            ray.shutdown()
    out = {"episodes": args.episodes, "dqn_return": float(d.mean()), "dqn_ci95": ci95(d),
           "dqn_purchases": float(res["dqn"]["purchases"].mean()), "dqn_length": float(res["dqn"]["length"].mean()),
           "best_greedy_name": best, "best_greedy_return": float(b.mean()), "best_greedy_ci95": ci95(b),
           "dqn_gain": float(gain), "dqn_gain_ci95": float(gain_ci), "dqn_gain_pct": float(100 * gain / b.mean()),
           "random_return": float(res["random"]["return"].mean()),
           "myopic_oracle_return": float(res["myopic_oracle(hidden state)"]["return"].mean()),
           **{f"{k}_return": float(v["return"].mean()) for k, v in res.items() if k in greedy_names},
           "train_seconds": float(policy.meta.get("train_seconds", float("nan"))),
           "train_timesteps": policy.meta.get("timesteps"), "sim_steps_per_s": sps,
           "ips": ope["ips"], "snips": ope["snips"], **{f"gap_{k}": v for k, v in gap.items()}, **thr}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
