"""The decision engine's artifact out of RLlib, and which one: `export_policy` turns the learner's
Q-network into a plain-torch `DecisionPolicy`; `Selection` scores candidates during training on a
validation seed and keeps the best (used by `trainers.train_dqn`)."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from envs.env import response_prior
from envs.policies import ci95, dqn_actor, evaluate_policy
from models.dqn.features import CANDIDATE_FEATURES
from models.dqn.network import QNetwork
from models.dqn.policy import DecisionPolicy
from reccore import tracking


def export_policy(algo, user_model, folder: Path, meta: dict | None = None, prior=None, weights: dict | None = None):
    """The learner's Q-network (or `weights` of the same shape: an average) + its myopic prior, for a
    residual network -> plain-torch DecisionPolicy artifact (no Ray needed to load it)."""
    module = learner_module(algo)
    net = QNetwork(module.encoder.cfg)
    net.load_state_dict(weights if weights is not None else
                        {k: v.detach().cpu() for k, v in module.encoder.state_dict().items()})
    return DecisionPolicy(net, user_model.catalog, CANDIDATE_FEATURES, meta, prior).save(folder)


class Selection:
    """In-training model selection: once epsilon has annealed, every `--select-every` env steps the greedy
    policy is exported and scored on the validation seed (expected-reward scoring, the same shoppers for
    every candidate, so two checkpoints differ by their decisions, not by their draws); the best is kept
    in `<out>/best_policy` and becomes the exported policy. Why: Q-learning on this simulator is not
    monotone -- continuing a 400k-step run to 800k lost 7 points on validation -- so the last iterate
    is a poor default. Each selection point also scores an exponential average of the weights over the
    last `--average-steps` env steps: with a constant learning rate the iterates wander around a
    solution, and their average has less of the noise that ranks candidates by accident. Scores live in
    state.json and the average in `<out>/weight_average.pt`, so a resumed run keeps both."""

    def __init__(self, args, state: dict, out: Path, um, sim_cfg, env_config: dict, anneal_end: int):
        self.every, self.episodes, self.seed = args.select_every, args.select_episodes, args.select_seed
        self.state, self.out, self.um, self.sim_cfg = state, out, um, sim_cfg
        self.prior = response_prior(env_config)
        self.start = min(anneal_end, args.timesteps)
        self.scores = state.setdefault("selection", [])
        self.average_steps = args.average_steps
        self.average_path = out / "weight_average.pt"
        self.average = torch.load(self.average_path) if self.average_path.exists() else None

    # -- the weight average -------------------------------------------------------------------------
    def accumulate(self, algo, steps: int) -> None:
        """After each training iteration: fold the learner's weights into the average (from the
        first iteration after epsilon has annealed)."""
        if self.average_steps <= 0 or steps < self.start:
            return
        weights = {k: v.detach().cpu().clone() for k, v in learner_module(algo).encoder.state_dict().items()}
        if self.average is None:
            self.average = weights
            self.state["average_since"] = steps
        else:
            rate = min(1.0, (steps - self.state["averaged_at"]) / self.average_steps)
            for k, v in weights.items():
                if v.is_floating_point():
                    self.average[k].mul_(1 - rate).add_(v, alpha=rate)
                else:
                    self.average[k] = v
        self.state["averaged_at"] = steps

    def save(self) -> None:
        if self.average is not None:
            torch.save(self.average, self.average_path)

    # -- selection ----------------------------------------------------------------------------------
    def due(self, steps: int, final: bool) -> bool:
        if self.every <= 0 or steps < self.start:
            return False
        last = self.scores[-1]["timesteps"] if self.scores else None
        if last == steps:
            return False
        return final or last is None or steps - last >= self.every

    def evaluate(self, algo, steps: int) -> None:
        # The average competes once it spans some training (at its first step it *is* the last iterate).
        averaged = self.average is not None and steps - self.state.get("average_since", steps) >= self.every / 2
        candidates = {"last": None} | ({"average": self.average} if averaged else {})
        for kind, weights in candidates.items():
            cand = export_policy(algo, self.um, self.out / "candidate_policy", meta={"timesteps": steps},
                                 prior=self.prior, weights=weights)
            ev = evaluate_policy(self.um, self.sim_cfg, dqn_actor(DecisionPolicy.load(cand)), self.episodes,
                                 seed=self.seed, expected_rewards=True)
            score = {"timesteps": steps, "weights": kind, "return": float(ev["return"].mean()),
                     "ci95": ci95(ev["return"])}
            best = self.best()
            self.scores.append(score)
            if best is None or score["return"] > best["return"]:
                shutil.rmtree(self.out / "best_policy", ignore_errors=True)
                cand.rename(self.out / "best_policy")
                score["best"] = True
            tracking.log_metrics({f"select_return_{kind}": score["return"]}, step=steps)
            print(f"[dqn] selection at {steps:,} steps, {kind} weights: {score['return']:.4f} ± {score['ci95']:.4f} "
                  f"on seed {self.seed} ({self.episodes} episodes)" + (" -- best so far" if score.get("best") else ""),
                  flush=True)

    def best(self) -> dict | None:
        kept = [s for s in self.scores if s.get("best")]
        return kept[-1] if kept else None

    def export(self, algo, steps: int, folder: Path, meta: dict) -> Path:
        """The policy artifact: the best selected candidate's weights, else the learner's current ones."""
        best = self.best()
        if best is None or not (self.out / "best_policy" / "weights.pt").exists():
            return export_policy(algo, self.um, folder, meta=meta, prior=self.prior)
        chosen = DecisionPolicy.load(self.out / "best_policy")
        chosen.meta = {**meta, "selected_timesteps": best["timesteps"], "selected_weights": best.get("weights"),
                       "selection": self.scores, "select_seed": self.seed, "select_episodes": self.episodes}
        return chosen.save(folder)


def learner_module(algo):
    """The (non-inference) RLModule that the learner trains."""
    lg = algo.learner_group
    if lg._learner is not None:  # local learner
        return lg._learner.module["default_policy"]
    return algo.get_module("default_policy")
