"""Train the decision engine: RLlib DQN (new API stack, torch) with the Transformer Q-network on the
calibrated shopping simulator; log to MLflow; export a plain-torch artifact and register dqn@champion.

    python -m trainers.train_dqn --format rees46 --path ../shared/data/rees46-oct2019-head --timesteps 200000
    ray job submit --working-dir . -- python -m trainers.train_dqn --num-env-runners 4 --envs-per-runner 8

Restarting the same command resumes from `<out>/checkpoint` (algorithm, module and optimizer state) and
the same MLflow run, until --timesteps env steps are done.
"""
from __future__ import annotations

import os

os.environ.setdefault("RLLIB_TEST_NO_TF_IMPORT", "1")  # before any ray.rllib import: no TensorFlow in RL

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from envs.env import register_rllib, sim_config, user_model  # noqa: E402
from envs.policies import ExpectedRevenueGreedy, dqn_actor, evaluate_policy  # noqa: E402
from envs.shopping import fit_engagement, fit_return_intercept  # noqa: E402
from envs.user_model import UserModel  # noqa: E402
from models.dqn.policy import DecisionPolicy  # noqa: E402
from reccore import logs, tracking  # noqa: E402
from reccore.progress import Progress  # noqa: E402
from trainers.common import add_data_args, load_kwargs  # noqa: E402
from trainers.dqn_selection import Selection  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = str(REPO / ".." / "shared" / "data" / "rees46-oct2019-head")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainers.train_dqn", description=__doc__.split("\n\n")[0])
    add_data_args(p, required=False, default_format="rees46", default_path=DEFAULT_DATA)  # the user model's log
    p.add_argument("--out", default=None, help="work folder (checkpoint, user model); default $RECSYS_HOME/dqn")
    p.add_argument("--timesteps", type=int, default=150_000, help="total env steps to train for")
    p.add_argument("--time-budget-s", type=float, default=None, help="stop this invocation after this many seconds")
    p.add_argument("--num-env-runners", type=int, default=0, help="remote env runners (0 = sample in the driver)")
    p.add_argument("--envs-per-runner", type=int, default=8, help="vectorized envs per env runner")
    p.add_argument("--vectorize", choices=("native", "sync"), default="native",
                   help="native: each runner steps its shoppers as one numpy batch (envs.env.ShoppingVectorEnv); "
                        "sync: gymnasium's SyncVectorEnv over one-shopper envs (a Python loop per step)")
    p.add_argument("--lr", type=float, default=2e-4,
                   help="learning rate (2e-4 beat 5e-4 on the validation seed, and trains more stably)")
    p.add_argument("--gamma", type=float, default=0.9,
                   help="discount per step (0 = a myopic DQN: the same network and budget, immediate reward only)")
    p.add_argument("--sim", action="append", default=[], metavar="FIELD=VALUE",
                   help="simulator setting (envs.shopping.SimConfig field), e.g. --sim sessions_max=8 "
                        "--sim return_rate=0.6 for episodes over a window of sessions; repeatable")
    p.add_argument("--prior", choices=("expected_revenue", "none"), default="expected_revenue",
                   help="expected_revenue: Q = the myopic expected reward (response models fitted on logged sessions "
                        "of the simulator, the expected_revenue baseline) + a learned residual that starts at 0 "
                        "(models/dqn/prior.py); none: Q learned from scratch")
    p.add_argument("--train-reward", choices=("expected", "sampled"), default="expected",
                   help="expected: each simulated step pays its expected reward given the simulator's hidden state "
                        "(the same expected return, so the same optimal policy; far less variance in the TD targets); "
                        "sampled: the drawn reward. Evaluation always draws")
    p.add_argument("--prior-sessions", type=int, default=6000,
                   help="logged sessions the prior's response models fit on")
    p.add_argument("--batch", type=int, default=128, help="train batch per learner update")
    p.add_argument("--training-intensity", type=float, default=4.0, help="replayed/sampled step ratio")
    p.add_argument("--epsilon-steps", type=int, default=None,
                   help="steps to anneal epsilon 1 -> 0.05 (default 40%% of --timesteps)")
    p.add_argument("--candidate-ids", choices=("on", "off"), default="off",
                   help="on: a candidate's hashed item embedding enters its Q; off (default): features, history "
                        "matches and attention over the history only (in the 8-session simulator the per-item rows "
                        "memorised noisy targets: -14%% against expected_revenue with them, +0.6%% without)")
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--n-layers", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=10, help="iterations between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--experiment", default="dqn", help="MLflow experiment")
    p.add_argument("--register", default="dqn", help="registered model name ('' = do not register)")
    p.add_argument("--eval-episodes", type=int, default=2000, help="episodes of the final greedy evaluation")
    p.add_argument("--select-every", type=int, default=50_000,
                   help="after epsilon has annealed, evaluate the greedy policy every this many env steps on the "
                        "validation seed and export the best one (0 = export the last)")
    p.add_argument("--select-episodes", type=int, default=4000, help="episodes per selection evaluation")
    p.add_argument("--average-steps", type=int, default=50_000,
                   help="horizon (env steps) of the exponential average of the Q-network's weights kept once "
                        "epsilon has annealed; each selection also scores the averaged network (0 = none)")
    p.add_argument("--select-seed", type=int, default=7,
                   help="simulator seed of the selection evaluations (keep it apart from the reported seeds)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a locally started Ray")
    return p.parse_args(argv)


def build_config(env_config: dict, args: argparse.Namespace):
    """The fluent DQNConfig (also used by the tests and the benchmark)."""
    # Lazy: RLlib (and Ray) load only when an algorithm is built, not when the options are parsed.
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from envs.env import reseed_vector_env
    from models.dqn.rl_module import TransformerDQNModule  # subclasses an RLlib module: needs RLlib

    name = register_rllib()
    eps_steps = args.epsilon_steps or max(int(0.4 * args.timesteps), 1000)
    return (
        DQNConfig()
        .environment(name, env_config=env_config)
        .framework("torch")
        .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=args.envs_per_runner,
                     rollout_fragment_length=16,
                     gym_env_vectorize_mode="vector_entry_point" if args.vectorize == "native" else "sync")
        .callbacks(on_environment_created=reseed_vector_env)
        .training(
            lr=args.lr, gamma=args.gamma, train_batch_size_per_learner=args.batch,
            replay_buffer_config={"type": "EpisodeReplayBuffer", "capacity": 100_000},
            num_steps_sampled_before_learning_starts=min(2000, args.timesteps // 4),
            target_network_update_freq=2000, tau=1.0, n_step=1,
            double_q=True, dueling=False, num_atoms=1, epsilon=[(0, 1.0), (eps_steps, 0.05)],
            training_intensity=args.training_intensity, grad_clip=10.0,
        )
        .rl_module(rl_module_spec=RLModuleSpec(module_class=TransformerDQNModule, model_config={
            "d_model": args.d_model, "n_layers": args.n_layers, "n_heads": 2, "item_buckets": 8192,
            "candidate_ids": args.candidate_ids == "on"}))
        .reporting(min_sample_timesteps_per_iteration=1000, metrics_num_episodes_for_smoothing=200)
        .debugging(seed=args.seed, log_level=logs.rllib_log_level())
    )


def next_iteration_fits(elapsed_s: float, last_iteration_s: float, budget_s: float | None) -> bool:
    """Whether one more training iteration, as long as the last one, ends inside the budget (none: always).
    An iteration cannot be cut, so checking only that the budget is not yet spent ended runs one iteration
    past it (46.7 s of 45 at the ladder's 10^5 rung)."""
    return not budget_s or elapsed_s + last_iteration_s <= budget_s


def budget_ends_exploration(steps: int, seconds: float, budget_s: float, schedule) -> str | None:
    """A warning when, at the rate measured so far, the time budget stops training before epsilon has
    annealed (a policy trained on almost random actions), with the flag values that fix it."""
    end_of_anneal = schedule[-1][0]
    reachable = int(steps / max(seconds, 1e-9) * budget_s)
    if reachable >= end_of_anneal:
        return None
    return (f"[dqn] warning: at {steps / max(seconds, 1e-9):.0f} env steps/s the {budget_s:g}-s budget ends training "
            f"near {reachable:,} steps, while epsilon anneals over {end_of_anneal:,} (it will still be "
            f"{epsilon_at(schedule, reachable):.2f}); set --timesteps to about {reachable:,} (epsilon then anneals "
            f"over 40% of it) or --epsilon-steps to about {int(0.4 * reachable):,}")


def epsilon_at(schedule, t: float) -> float:
    ts, vs = zip(*schedule)
    return float(np.interp(t, ts, vs))


def metric(result: dict, *path, default=float("nan")):
    cur = result
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return default
        cur = cur[p]
    try:
        return float(cur)
    except (TypeError, ValueError):
        return default


def sim_overrides(pairs: list[str]) -> dict:
    """["sessions_max=8", "return_rate=0.6"] -> {"sessions_max": 8, "return_rate": 0.6} (YAML scalars);
    unknown fields fail with the valid ones."""
    import yaml

    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--sim takes FIELD=VALUE (e.g. --sim sessions_max=8); got {pair!r}")
        values[key.strip()] = yaml.safe_load(value)
    sim_config(values)  # validate now: a typo fails before Ray starts
    return values


def prepare_env_config(args, out: Path) -> tuple[dict, object]:
    """Fit the user model once in the driver, save it, fit the engagement once (click_max, leave_scale)
    and, for episodes over sessions, the return model's intercept; workers load the folder."""
    um_dir = out / "user_model"
    if (um_dir / "calibration.json").exists():
        um = UserModel.load(um_dir)
    else:
        um = user_model({"data": args.path, "fmt": args.fmt, "load_kwargs": load_kwargs(args)})
        um.save(um_dir)
    given = sim_overrides(getattr(args, "sim", []))
    base = sim_config(given)
    fitted = {}
    if base.click_max is None:
        fitted["click_max"], fitted["leave_scale"] = fit_engagement(um, base)
    if base.sessions_max > 1 and base.return_intercept is None:
        fitted["return_intercept"] = fit_return_intercept(um, dataclasses.replace(base, **fitted))
    sim_cfg = dataclasses.replace(base, **fitted)
    env_config = {"user_model": str(um_dir), "sim": {**given, **fitted}, "seed": args.seed,
                  "train_reward": args.train_reward}
    if args.prior != "none":
        prior_dir = out / "prior"
        resuming = (out / "checkpoint" / "rllib_checkpoint.json").exists() and (prior_dir / "prior.json").exists()
        if not resuming:  # a resumed run keeps the prior its network was trained over
            try:
                er = ExpectedRevenueGreedy.fit(um, sim_cfg, n_sessions=args.prior_sessions, seed=args.seed)
            except ValueError as e:
                raise SystemExit(f"[dqn] the expected-revenue prior cannot be fitted: {e}; raise --prior-sessions "
                                 "or train without a prior (--prior none)") from e
            er.prior.save(prior_dir)
        env_config["prior"] = str(prior_dir)
    return env_config, um, sim_cfg


def main(argv=None) -> dict:
    args = parse_args(argv)
    # Lazy: plotting and Ray load when a job runs, not when another module imports this one.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import ray

    out = Path(args.out) if args.out else tracking.work_dir() / "dqn"
    out.mkdir(parents=True, exist_ok=True)
    env_config, um, sim_cfg = prepare_env_config(args, out)
    if not ray.is_initialized():
        pp = os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
        env_vars = {"RLLIB_TEST_NO_TF_IMPORT": "1", "OMP_NUM_THREADS": "1"}
        if os.environ.get("RAY_ADDRESS"):  # under `ray job submit`: join the cluster; working_dir ships the code
            ray.init(runtime_env={"env_vars": env_vars})
        else:
            ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env=logs.ray_runtime_env({**env_vars, "PYTHONPATH": pp}))
    config = build_config(env_config, args)
    algo = config.build_algo()
    ckpt = out / "checkpoint"
    state_path = out / "state.json"
    state = {"history": [], "train_seconds": 0.0, "run_id": None}
    if (ckpt / "rllib_checkpoint.json").exists() and state_path.exists():
        algo.restore_from_path(str(ckpt))
        state = json.loads(state_path.read_text())
        print(f"resumed from {ckpt} at {state['history'][-1]['timesteps'] if state['history'] else 0} steps")
    mlflow = tracking.configured_mlflow()
    exp_id = tracking.experiment_id(args.experiment)
    nested = mlflow.active_run() is not None  # inside the pipeline's stage run
    run = mlflow.start_run(run_id=state["run_id"], nested=nested) if state["run_id"] else mlflow.start_run(
        experiment_id=exp_id, run_name="dqn", nested=nested)
    try:
        state["run_id"] = run.info.run_id
        if not state["history"]:
            tracking.log_params({**{k: v for k, v in vars(args).items() if k != "sim"},
                                 **{f"sim_{k}": v for k, v in env_config["sim"].items()}, **um.cal.__dict__})
        eps_sched = config.epsilon
        selection = Selection(args, state, out, um, sim_cfg, env_config, anneal_end=eps_sched[-1][0])
        t0 = time.perf_counter()
        steps = state["history"][-1]["timesteps"] if state["history"] else 0
        it = len(state["history"])
        bar = Progress(args.timesteps, desc="dqn", unit="env step", budget_s=args.time_budget_s)
        bar.update(steps)
        last_iteration = 0.0
        while steps < args.timesteps:
            if not next_iteration_fits(time.perf_counter() - t0, last_iteration, args.time_budget_s):
                break
            ti = time.perf_counter()
            result = algo.train()
            it += 1
            steps = int(metric(result, "num_env_steps_sampled_lifetime", default=0)
                        or metric(result, "env_runners", "num_env_steps_sampled_lifetime", default=0))
            row = {"iteration": it, "timesteps": steps,
                   "return": metric(result, "env_runners", "episode_return_mean"),
                   "episode_len": metric(result, "env_runners", "episode_len_mean"),
                   "epsilon": epsilon_at(eps_sched, steps),
                   "loss": metric(result, "learners", "default_policy", "qf_loss"),
                   "td_error": metric(result, "learners", "default_policy", "td_error_mean"),
                   "iter_seconds": time.perf_counter() - ti}
            state["history"].append(row)
            state["train_seconds"] += row["iter_seconds"]
            last_iteration = row["iter_seconds"]
            tracking.log_metrics({k: v for k, v in row.items() if np.isfinite(v)}, step=steps)
            bar.update(steps - bar.done, **{"return": row["return"], "epsilon": row["epsilon"]})
            if it == 3 and args.time_budget_s:  # a fresh run: the rate of its first iterations
                warn = budget_ends_exploration(steps, time.perf_counter() - t0, args.time_budget_s, eps_sched)
                if warn:
                    print(warn, flush=True)
            if logs.verbose():
                print(json.dumps(row))
            selection.accumulate(algo, steps)
            selected = selection.due(steps, final=steps >= args.timesteps)
            if selected:
                selection.evaluate(algo, steps)
            # A checkpoint after each selection too: best_policy/ and state.json's scores change together.
            if selected or it % args.checkpoint_every == 0 or steps >= args.timesteps:
                algo.save_to_path(str(ckpt))
                selection.save()
                state_path.write_text(json.dumps(state))
        bar.close()
        if selection.due(steps, final=True):  # a budget-ended run: its last policy competes too
            selection.evaluate(algo, steps)
        algo.save_to_path(str(ckpt))
        selection.save()
        state_path.write_text(json.dumps(state))

        # curve plot
        h = state["history"]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([r["timesteps"] for r in h], [r["return"] for r in h], label="episode return (mean of last 200)")
        ax.set_xlabel("env steps")
        ax.set_ylabel("return")
        ax2 = ax.twinx()
        ax2.plot([r["timesteps"] for r in h], [r["epsilon"] for r in h], color="gray", ls="--", label="epsilon")
        ax2.set_ylabel("epsilon")
        fig.legend(loc="upper right")
        fig.tight_layout()
        tracking.log_figure(fig, "reward_epsilon.png")
        plt.close(fig)

        # export (the selected policy, else the last), evaluate greedily in the vectorized simulator,
        # log and register
        policy_dir = selection.export(algo, steps, out / "policy", meta={
            "env_config": env_config, "sim_config": sim_cfg.__dict__ | {"reward": sim_cfg.reward.__dict__},
            "train_seconds": state["train_seconds"], "timesteps": steps, "gamma": args.gamma,
            "prior": args.prior})
        exported = DecisionPolicy.load(policy_dir)
        ev = evaluate_policy(um, sim_cfg, dqn_actor(exported), args.eval_episodes, seed=12345)
        summary = {"eval_return": float(ev["return"].mean()), "eval_purchases": float(ev["purchases"].mean()),
                   "eval_length": float(ev["length"].mean()), "eval_sessions": float(ev["sessions"].mean()),
                   "train_seconds": state["train_seconds"], "timesteps": steps,
                   "selected_timesteps": exported.meta.get("selected_timesteps", steps)}
        tracking.log_metrics(summary)
        mlflow.log_artifacts(str(policy_dir), artifact_path="policy")
        if args.register:
            summary["version"] = tracking.register(mlflow.get_artifact_uri("policy"), args.register)
        if logs.verbose() or not logs.in_pipeline_stage():  # the pipeline prints its own line per stage
            print(json.dumps(summary))
        return summary
    finally:
        mlflow.end_run()
        algo.stop()


def pipeline_stage(ctx) -> dict:
    """The pipeline's decision stage: simulator calibrated on the same data, DQN trained, exported and
    registered. `ctx.options` holds this module's command-line options by name (e.g. timesteps)."""
    argv = ["--format", ctx.data["fmt"], "--path", ctx.data["path"], "--out", str(Path(ctx.work_dir) / "dqn")]
    for kind, flag in (("mapping", "--map"), ("event_map", "--event-map")):
        for key, value in ctx.data.get("load_kwargs", {}).get(kind, {}).items():
            argv += [flag, f"{key}={value}"]
    for key, value in ctx.options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    summary = main(argv)
    return {"artifact": "models:/dqn@champion" if summary.get("version") else None, **summary}


if __name__ == "__main__":
    main()
