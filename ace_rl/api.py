"""The Python API: what the `ace-rl` command does, from a script, a thread or a notebook.

    import ace_rl
    run = ace_rl.train(env="examples.point_reach:PointReach-v0", preset="small", total_steps=20_000, seed=0)
    run = ace_rl.train(env=lambda: MyReach(goal=0.3), preset="small", run_dir="runs/reach")   # a factory
    policy = ace_rl.load_policy(run.run_dir)        # a run directory (its best.pt) or a policy file
    action = policy.predict(observation)            # numpy in, numpy out, in the environment's units
    ace_rl.resume(run.run_dir)                      # continue an interrupted run
    ace_rl.evaluate(policy, episodes=10, seed=0)    # mean and std of the returns (and the success rate)
    policy.export("reach.onnx")                     # ONNX or TorchScript, checked against predict

Settings are the options of `ace-rl train` as keywords (``total_steps=20_000``), or a whole
`TrainConfig`. Nothing passed in is modified. Errors are the exceptions the command
reports in one line (`ConfigError`, `EnvError`, ...).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ace_rl.actions import DistractorActions
from ace_rl.config import (
    RESUMABLE_SETTINGS,
    ConfigError,
    TrainConfig,
    code_trust,
    load_run_config,
    preset_config,
    resumed_config,
    validate,
)
from ace_rl.envs import EnvFactory, factory_path, seed_env
from ace_rl.evaluation import Episodes, run_episodes
from ace_rl.policy import Policy, load_policy
from ace_rl.rundir import RunDir
from ace_rl.trust import CodeTrust


@dataclass(frozen=True)
class Run:
    """A run directory written by `train` or `resume`, and its configuration."""

    run_dir: Path
    config: TrainConfig

    def metrics(self) -> list[dict[str, float | None]]:
        """The evaluations (metrics.csv) as rows of numbers; an empty cell is None."""
        with open(RunDir(self.run_dir).metrics, newline="") as file:
            return [
                {name: float(value) if value != "" else None for name, value in row.items()}
                for row in csv.DictReader(file)
            ]

    def policy(self, checkpoint: str = "best") -> Policy:
        """The policy of the best evaluation (``best``) or of the end of training (``final``); the modules of the
        run's own --env and --algo, which this Run was made with, may be imported."""
        return load_policy(self.run_dir, checkpoint, trust_run_code=code_trust(self.config))


def _factory(env: str | EnvFactory | None) -> EnvFactory | None:
    if env is None or isinstance(env, str):
        return None
    if not callable(env):
        raise ConfigError(f"env must be a task id or a callable that returns a gymnasium.Env, got {type(env).__name__}")
    return env


def _with_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with a run_dir or resume given as a str (or another path-like) made a Path; other types are left
    for validate() to refuse."""
    paths: dict[str, Any] = {
        name: Path(value)
        for name in ("run_dir", "resume")
        if isinstance(value := getattr(config, name), (str, os.PathLike)) and not isinstance(value, Path)
    }
    return dataclasses.replace(config, **paths)


def train(
    config: TrainConfig | None = None,
    /,
    *,
    env: str | EnvFactory | None = None,
    preset: str = "paper",
    algo: str = "ace",
    **settings: Any,
) -> Run:
    """Train and return the run: from a TrainConfig, or from settings as keywords on top of ``preset`` and ``algo``.

    ``env`` is a task id (as ``ace-rl train --env``) or a callable that returns a gymnasium.Env; a factory that
    can be imported (a module's function) is recorded as ``module:function``, so that ``ace-rl eval`` and
    ``resume`` rebuild it; another one (a lambda) must be passed again to `resume` and `evaluate`.
    """
    factory = _factory(env)
    if config is not None:
        if settings or env is not None:
            raise TypeError("give either a TrainConfig or settings as keywords, not both")
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"train takes a TrainConfig or settings as keywords, got a {type(config).__name__}")
        config = _with_paths(config)
    else:
        if env is not None:
            settings["env"] = factory_path(factory) if factory is not None else env
        config = _with_paths(preset_config(preset, algo, **settings))
    if config.resume is not None:
        return resume(config.resume, env=factory, trust_run_code=config.trust_run_code)
    from ace_rl.trainer import train as train_run

    run_dir = train_run(config, env_factory=factory)
    return Run(run_dir, load_run_config(run_dir, code_trust(config)))


def resume(run_dir: str | Path, *, env: EnvFactory | None = None, trust_run_code: bool = False, **settings: Any) -> Run:
    """Continue the run in ``run_dir`` from its latest intact checkpoint (from zero when it has none yet).

    Only the settings that do not change the experiment may be given (``total_steps`` to extend it, ``device``,
    ``threads``, ...); ``env`` is the factory the run was trained with, when it cannot be imported.
    ``config.json`` is data: a ``module:NAME`` environment or agent it names is imported only when given again as
    ``settings`` (``env="my_mod:Env-v0"``, ``algo=...``), with ``trust_run_code=True``, or when its module is listed
    in ACE_RL_TRUSTED_MODULES (ace_rl.trust).
    """
    if not isinstance(run_dir, (str, os.PathLike)):
        raise ConfigError(f"resume takes a run directory (a str or pathlib.Path), got a {type(run_dir).__name__}")
    run_dir = Path(run_dir)
    trust = CodeTrust.given(trust_run_code, [("env", settings.get("env")), ("algo", settings.get("algo"))])
    stored = load_run_config(run_dir, trust)
    unknown = sorted(set(settings) - {field.name for field in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"unknown settings {', '.join(unknown)}")
    requested = _with_paths(dataclasses.replace(stored, **settings, resume=run_dir, trust_run_code=trust_run_code))
    validate(requested)  # the types first: comparing with the stored settings needs values of the right type
    requested = resumed_config(stored, requested, set(settings))
    from ace_rl.trainer import train as train_run

    train_run(requested, env_factory=_factory(env))
    return Run(run_dir, load_run_config(run_dir, code_trust(requested)))


@dataclass(frozen=True)
class Evaluation:
    """Returns of deterministic episodes; the success rate where the task reports success."""

    returns: np.ndarray
    success_rate: float | None

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())


def evaluate(
    policy: Policy | str | Path,
    env: gym.Env | str | EnvFactory | None = None,
    episodes: int = 10,
    seed: int = 0,
    checkpoint: str = "best",
    trust_run_code: bool = False,
) -> Evaluation:
    """Run ``policy`` (a Policy, a run directory or a policy file) deterministically for ``episodes`` episodes.

    ``env``: the policy's own task when None, else a task id, a factory or an environment instance (used as
    given, Dict observations included; it is not closed). ``trust_run_code``: a policy file's own ``module:NAME``
    environment or agent may be imported (ace_rl.trust); a Policy keeps the trust it was loaded with.
    """
    if episodes < 1:
        raise ConfigError(f"episodes must be a positive integer, got {episodes}")
    if not isinstance(policy, Policy):
        policy = load_policy(policy, checkpoint, trust_run_code=trust_run_code)
    owned = not isinstance(env, gym.Env)
    if env is None:
        environment = policy.make_env()
    elif isinstance(env, str):
        environment = policy.make_env(env_id=env)
    elif isinstance(env, gym.Env):
        environment = DistractorActions(env, policy.distractor_actions) if policy.distractor_actions else env
    else:
        environment = policy.make_env(factory=_factory(env))
    try:
        seed_env(environment, seed)
        result: Episodes = run_episodes(policy.predict, environment, episodes)
    finally:
        if owned:
            environment.close()
    return Evaluation(result.returns, result.success_rate)


__all__ = ["RESUMABLE_SETTINGS", "Evaluation", "Policy", "Run", "evaluate", "load_policy", "resume", "train"]
