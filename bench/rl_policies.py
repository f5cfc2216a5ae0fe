"""Benchmark the decision engine against strong myopic baselines on the calibrated simulator.

    python -m bench.rl_policies        # uses $RECSYS_HOME/dqn (train first: python -m trainers.train_dqn)
    python -m bench.rl_policies --episodes 20000 --myopic-work ~/.recsys/dqn_gamma0 --rllib-throughput

The long-term test (issue 20): train both on episodes over a window of sessions, the same budget and
the same in-training selection (validation seed 7, every 50k steps once epsilon has annealed),
    python -m trainers.train_dqn --sim sessions_max=8 --sim return_rate=0.6 --gamma 0.97 --timesteps 600000 \
        --epsilon-steps 160000 --envs-per-runner 32 --out W
    python -m trainers.train_dqn --sim sessions_max=8 --sim return_rate=0.6 --gamma 0 --timesteps 600000 \
        --epsilon-steps 160000 --envs-per-runner 32 --out W0
    python -m bench.rl_policies --work W --myopic-work W0 --episodes 20000 --expected-rewards --sensitivity

Every policy runs the same N episodes (same simulator seed -> same shoppers and session starts; the
evaluation seed is not one the trainer used): random, every myopic baseline of envs.policies (greedy by
each engine, the blend, their never-re-show-skipped versions, expected-revenue greedy from fitted response
models), the gamma = 0 DQN when --myopic-work names one, the hidden-state myopic oracle (a ceiling, not a
baseline) and the DQN. Mean return, purchases, session length, sessions per shopper with 95% CIs
(normal approximation); the DQN's gain over the best myopic baseline with a 95% CI. Also: which decisions
the DQN makes differently (re-shows, skipped re-shows, price, category, click rate per show, agreement
with the best baseline), the sim-to-real gap, OPE of the eps-greedy DQN (IPS, SNIPS, DR with clipped
weights) beside its simulated value, simulator and training throughput, and with --sensitivity the DQN's
advantage as each assumption of the return model moves (the same trained policies; not retrained).
The last line is JSON.
"""
from __future__ import annotations

import os

os.environ.setdefault("RLLIB_TEST_NO_TF_IMPORT", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.spatial.distance import jensenshannon  # noqa: E402

from envs import ope  # noqa: E402
from envs.policies import (ci95, dqn_actor, dqn_q_values, evaluate_policy, history_matches,  # noqa: E402
                           myopic_baselines, myopic_oracle)
from envs.shopping import RewardConfig, ShopperSim, SimConfig, logging_policy  # noqa: E402
from envs.user_model import UserModel  # noqa: E402
from models.dqn.policy import DecisionPolicy  # noqa: E402
from reccore import tracking  # noqa: E402
from reccore.constants import VIEW  # noqa: E402
from trainers.train_dqn import build_config, parse_args  # noqa: E402

SENSITIVITY = {"return_click": (0.0, 4.0), "return_repeat": (0.0, -4.0), "return_fatigue": (0.0, -0.5),
               "fatigue_carry": (0.0, 1.0), "return_rate": (0.3, 0.8)}
"""Assumption -> values to move it to (its default sits between them)."""


def sim_config_of(policy: DecisionPolicy) -> SimConfig:
    sc = dict(policy.meta["sim_config"])
    reward = RewardConfig(**sc.pop("reward"))
    known = {f.name for f in dataclasses.fields(SimConfig)}
    cfg = SimConfig(**{k: (tuple(v) if k == "slots" else v) for k, v in sc.items() if k in known})
    cfg.reward = reward
    return cfg


def decision_profile(um: UserModel, cfg: SimConfig, actor, n: int, seed: int, other=None) -> dict:
    """What a policy shows, per decision of live episodes: share of re-shows (item in the visible
    history), of skipped re-shows, same category as the last item, mean log price, click rate; with
    `other`, the share of decisions where `other` would have chosen the same candidate."""
    sim = ShopperSim(um, cfg, n=n, seed=seed)
    sim.reset()
    alive = np.ones(n, bool)
    sim.active = alive
    acc = {k: 0.0 for k in ("reshow", "reshow_skipped", "same_category", "log_price", "click", "agree")}
    steps = 0
    rows = np.arange(n)
    while alive.any():
        a = actor(sim)
        shown, skipped = history_matches(sim)
        live = alive.copy()
        acc["reshow"] += shown[rows, a][live].sum()
        acc["reshow_skipped"] += skipped[rows, a][live].sum()
        acc["same_category"] += sim.feats[rows, a, 5][live].sum()
        acc["log_price"] += um.log_price[sim.cand[rows, a]][live].sum()
        if other is not None:
            acc["agree"] += (other(sim) == a)[live].sum()
        _, te, tr, resp = sim.step(a)
        acc["click"] += (resp >= VIEW)[live].sum()
        steps += live.sum()
        alive &= ~(te | tr)
    sim.active = np.ones(n, bool)
    out = {k: float(v / max(steps, 1)) for k, v in acc.items()}
    if other is None:
        out.pop("agree")
    return out


def compare(d: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean difference, 95% CI half-width) of two independent-sample means."""
    return float(d.mean() - b.mean()), float(1.96 * np.sqrt(d.var(ddof=1) / len(d) + b.var(ddof=1) / len(b)))


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
    p.add_argument("--myopic-work", default=None,
                   help="--out folder of the same training with --gamma 0 (the myopic DQN baseline)")
    p.add_argument("--episodes", type=int, default=20000, help="episodes per policy (>= 500)")
    p.add_argument("--seed", type=int, default=2024, help="evaluation seed (held out: the trainer uses 0..)")
    p.add_argument("--fit-sessions", type=int, default=6000, help="logged sessions the expected-revenue models fit on")
    p.add_argument("--ope-episodes", type=int, default=20000)
    p.add_argument("--ope-eps", type=float, default=0.1, help="the OPE target: the DQN made eps-greedy")
    p.add_argument("--ope-clip", type=float, default=100.0, help="clip of the cumulative importance weights")
    p.add_argument("--ope-temperature", type=float, default=0.3, help="logging policy's softmax temperature")
    p.add_argument("--expected-rewards", action="store_true",
                   help="score each step by its expected reward given the hidden state (the same expected return, "
                        "about half the CI); the trajectories are still drawn")
    p.add_argument("--sensitivity", action="store_true", help="DQN advantage as each return assumption moves")
    p.add_argument("--rllib-throughput", action="store_true", help="also measure RLlib steps/s with 0/1/2 runners")
    args = p.parse_args(argv)
    if args.episodes < 500:
        raise SystemExit("--episodes must be >= 500 for the confidence intervals to mean something")
    work = Path(args.work) if args.work else tracking.work_dir() / "dqn"
    if not (work / "policy" / "manifest.json").exists():
        raise SystemExit(f"no trained policy in {work}/policy; run `python -m trainers.train_dqn` first")
    policy = DecisionPolicy.load(work / "policy")
    um = UserModel.load(work / "user_model")
    cfg = sim_config_of(policy)
    myopic = None
    if args.myopic_work:
        myopic = DecisionPolicy.load(Path(args.myopic_work) / "policy")
        if dataclasses.asdict(sim_config_of(myopic)) != dataclasses.asdict(cfg):
            raise SystemExit(f"{args.myopic_work} was trained on another simulator config than {work}; "
                             "train both with the same --sim flags")

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    baselines = myopic_baselines(um, cfg, seed=args.seed, fit_sessions=args.fit_sessions)
    print(f"myopic baselines ready ({time.perf_counter() - t0:.1f}s: expected-revenue response models fitted)")
    policies = {"random": lambda s: rng.integers(0, cfg.n_candidates, s.n), **baselines}
    if myopic is not None:
        policies["myopic_dqn"] = dqn_actor(myopic)
    policies["myopic_oracle(hidden state)"] = myopic_oracle
    policies["dqn"] = dqn_actor(policy)
    res = {}
    print(f"{'policy':30s} {'return':>16s} {'purchases/episode':>22s} {'length':>18s} {'sessions':>16s}  "
          f"(N={args.episodes}, 95% CI{'; expected rewards' if args.expected_rewards else ''})")
    for name, actor in policies.items():
        t0 = time.perf_counter()
        r = evaluate_policy(um, cfg, actor, args.episodes, seed=args.seed, expected_rewards=args.expected_rewards)
        res[name] = r
        print(f"{name:30s} {r['return'].mean():8.4f} ± {ci95(r['return']):.4f} {r['purchases'].mean():12.4f} ± "
              f"{ci95(r['purchases']):.4f} {r['length'].mean():9.3f} ± {ci95(r['length']):.3f} "
              f"{r['sessions'].mean():8.3f} ± {ci95(r['sessions']):.3f}  ({time.perf_counter() - t0:.1f}s)")
    myopic_names = list(baselines) + (["myopic_dqn"] if myopic is not None else [])
    best = max(myopic_names, key=lambda k: res[k]["return"].mean())
    d, b = res["dqn"]["return"], res[best]["return"]
    gain, gain_ci = compare(d, b)
    print(f"\nDQN vs best myopic baseline ({best}): {gain:+.4f} ± {gain_ci:.4f} return "
          f"({100 * gain / b.mean():+.1f}% [{100 * (gain - gain_ci) / b.mean():+.1f}%, "
          f"{100 * (gain + gain_ci) / b.mean():+.1f}%]), {args.episodes} episodes each, seed {args.seed}")

    n_prof = min(args.episodes, 5000)
    profile = {name: decision_profile(um, cfg, policies[name], n_prof, args.seed,
                                      other=policies[best] if name == "dqn" else None)
               for name in ("dqn", best, "myopic_oracle(hidden state)")}
    print(f"\nwhat each shows, per decision ({n_prof} episodes; agree = DQN's choice equals {best}'s):")
    for name, prof in profile.items():
        print(f"  {name:30s} " + "  ".join(f"{k} {v:.3f}" for k, v in prof.items()))

    gap = sim_to_real_gap(um, dataclasses.replace(cfg, sessions_max=1))
    print("\nsim-to-real gap (logging policy vs held-out real sessions):")
    for k, v in gap.items():
        print(f"  {k:28s} {v}")

    t0 = time.perf_counter()
    q_model = lambda sim: dqn_q_values(policy, sim)  # noqa: E731
    checked = ope.check(um, cfg, ope.epsilon_greedy(dqn_actor(policy), args.ope_eps), q_model,
                        n=args.ope_episodes, seed=7, clip=args.ope_clip, temperature=args.ope_temperature)
    print(f"\nOPE of the {args.ope_eps}-greedy DQN from {args.ope_episodes} episodes of the logging policy "
          f"(temperature {args.ope_temperature}, weights clipped at {args.ope_clip}, "
          f"{100 * checked['ope_clipped_share']:.2f}% clipped; {time.perf_counter() - t0:.0f}s):")
    print(f"  simulated truth {checked['ope_truth']:.4f} ± {checked['ope_truth_ci95']:.4f} | "
          f"IPS {checked['ope_ips']:.4f} ± {checked['ope_ips_ci95']:.4f} | SNIPS {checked['ope_snips']:.4f} ± "
          f"{checked['ope_snips_ci95']:.4f} | DR {checked['ope_dr']:.4f} ± {checked['ope_dr_ci95']:.4f} | "
          f"logging policy {checked['ope_logging_value']:.4f}")
    sps = sim_steps_per_s(um, cfg)
    train_s = float(policy.meta.get("train_seconds", float("nan")))
    env_sps = float(policy.meta.get("timesteps") or 0) / train_s if train_s > 0 else float("nan")
    print(f"\nsimulator alone (vectorized, 1024 shoppers, 1 process): {sps:,.0f} env steps/s; "
          f"the DQN's training run: {env_sps:,.0f} env steps/s")

    sens = {}
    if args.sensitivity:
        sens = sensitivity(um, cfg, policy, baselines, best if best in baselines else "expected_revenue",
                           myopic, min(args.episodes, 10000), args.seed, args.expected_rewards)
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
    md = res["myopic_dqn"]["return"] if myopic is not None else None
    out = {"episodes": args.episodes, "eval_seed": args.seed, "sessions_max": cfg.sessions_max,
           "expected_rewards": args.expected_rewards, "train_prior": policy.meta.get("prior", "none"),
           "dqn_return": float(d.mean()), "dqn_ci95": ci95(d),
           "dqn_purchases": float(res["dqn"]["purchases"].mean()), "dqn_length": float(res["dqn"]["length"].mean()),
           "best_greedy_name": best, "best_greedy_return": float(b.mean()), "best_greedy_ci95": ci95(b),
           "dqn_gain": gain, "dqn_gain_ci95": gain_ci, "dqn_gain_pct": float(100 * gain / b.mean()),
           "random_return": float(res["random"]["return"].mean()),
           "myopic_oracle_return": float(res["myopic_oracle(hidden state)"]["return"].mean()),
           "oracle_return": float(res["myopic_oracle(hidden state)"]["return"].mean()),
           "myopic_dqn_return": float(md.mean()) if md is not None else float("nan"),
           "myopic_dqn_ci95": ci95(md) if md is not None else float("nan"),
           "sessions_per_user": float(res["dqn"]["sessions"].mean()),
           **{f"{k}_return": float(v["return"].mean()) for k, v in res.items() if k in myopic_names},
           **{f"{k}_sessions": float(v["sessions"].mean()) for k, v in res.items() if k in myopic_names},
           "train_seconds": train_s, "train_timesteps": policy.meta.get("timesteps"),
           "train_gamma": policy.meta.get("gamma"), "sim_steps_per_s": sps, "env_steps_per_s": env_sps,
           "ips": checked["ope_ips"], "snips": checked["ope_snips"], **checked,
           **{f"profile_{name.split('(')[0]}_{k}": v for name, prof in profile.items() for k, v in prof.items()},
           **{f"gap_{k}": v for k, v in gap.items()}, **sens, **thr}
    print(json.dumps(out))
    return out


def sensitivity(um: UserModel, cfg: SimConfig, policy, baselines: dict, best: str, myopic, n: int,
                seed: int, expected_rewards: bool = False) -> dict:
    """The DQN's gain over the best myopic baseline (and the gamma = 0 DQN) as each return assumption
    moves; the intercept is refitted so the logging policy keeps its return rate. Policies are not
    retrained: this measures how far the measured advantage rests on each assumption."""
    from envs.shopping import fit_return_intercept

    print(f"\nsensitivity ({n} episodes each; gain of the DQN over {best}" +
          (" and over the gamma=0 DQN" if myopic is not None else "") + "):")
    out = {}
    for field, values in SENSITIVITY.items():
        for value in values:
            c = dataclasses.replace(cfg, **{field: value}, return_intercept=None)
            c = dataclasses.replace(c, return_intercept=fit_return_intercept(um, c))
            d = evaluate_policy(um, c, dqn_actor(policy), n, seed, expected_rewards)["return"]
            b = evaluate_policy(um, c, baselines[best], n, seed, expected_rewards)["return"]
            g, gci = compare(d, b)
            key = f"sens_{field}_{value:g}"
            out[f"{key}_gain_pct"] = float(100 * g / b.mean())
            line = f"  {field:16s} = {value:<6g} DQN {d.mean():.4f}  {best} {b.mean():.4f}  gain {g:+.4f} ± {gci:.4f}"
            if myopic is not None:
                m = evaluate_policy(um, c, dqn_actor(myopic), n, seed, expected_rewards)["return"]
                g2, g2ci = compare(d, m)
                out[f"{key}_gain_over_myopic_dqn_pct"] = float(100 * g2 / m.mean())
                line += f"  | over gamma=0 DQN {g2:+.4f} ± {g2ci:.4f}"
            print(line)
    return out


if __name__ == "__main__":
    main()
