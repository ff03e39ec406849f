"""The Python API: what the `ace-rl` command does, from a script, a thread or a notebook.

    import ace_rl
    run = ace_rl.train(env="examples.point_reach:PointReach-v0", preset="small", total_steps=20_000, seed=0)
    run = ace_rl.train(env=lambda: MyReach(goal=0.3), preset="small", run_dir="runs/reach")   # a factory
    policy = ace_rl.load_policy(run.run_dir)        # a run directory (its best.pt) or a policy file
    action = policy.predict(observation)            # numpy in, numpy out, in the environment's units
    ace_rl.resume(run.run_dir)                      # continue an interrupted run
    ace_rl.train(config, callbacks=[EarlyStopping(threshold=-200)])   # hooks into the loop (ace_rl.callbacks)
    ace_rl.evaluate(policy, episodes=10, seed=0)    # mean and std of the returns (and the success rate)
    policy.export("reach.onnx")                     # ONNX or TorchScript, checked against predict

Settings are the options of `ace-rl train` as keywords (``total_steps=20_000``), or a whole
`TrainConfig`. Nothing passed in is modified. Errors are the exceptions the command
reports in one line (`ConfigError`, `EnvError`, ...).

This is the one front door: `ace-rl train`, `eval` and `export` (ace_rl/cli.py) and a sweep's workers
(ace_rl/sweep/worker.py) call these functions, and only these reach the training loop (ace_rl.trainer).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from ace_rl.actions import DistractorActions
from ace_rl.callbacks import Callback, check_callbacks
from ace_rl.config import (
    RECORDED_SETTINGS,
    RESUMABLE_SETTINGS,
    ConfigError,
    TrainConfig,
    _check_types,
    code_trust,
    load_run_config,
    preset_config,
    resumed_config,
    validate,
)
from ace_rl.envs import EnvFactory, factory_path, seed_env
from ace_rl.evaluation import Evaluation, run_episodes
from ace_rl.policy import Policy, load_policy
from ace_rl.rundir import RunDir
from ace_rl.runstate import StopRecord, TrainingStopped, read_stop_record
from ace_rl.trust import CodeTrust

if TYPE_CHECKING:
    from ace_rl.export import ExportReport


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

    @property
    def stopped_early(self) -> StopRecord | None:
        """Where a callback stopped the run before its total (which callback, why); None where none did."""
        return read_stop_record(self.run_dir)

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
    callbacks: list[Callback] | None = None,
    **settings: Any,
) -> Run:
    """Train and return the run: from a TrainConfig, or from settings as keywords on top of ``preset`` and ``algo``.

    ``env`` is a task id (as ``ace-rl train --env``) or a callable that returns a gymnasium.Env; a factory that
    can be imported (a module's function) is recorded as ``module:function``, so that ``ace-rl eval`` and
    ``resume`` rebuild it; another one (a lambda) must be passed again to `resume` and `evaluate`.

    A TrainConfig whose ``resume`` names a run directory is the whole configuration of that run continued (as
    ``ace-rl train --resume DIR ...`` builds it): it continues there if every setting but those `resume` may change
    (and ``run_dir``) equals the run's config.json. With keywords, ``resume=DIR`` is `resume` with the other
    keywords. A stop by SIGINT or SIGTERM raises `TrainingStopped` once its checkpoint is written.

    ``callbacks``: instances of ace_rl.callbacks.Callback, called by the loop after its own parts (early stopping,
    extra logging, ...); their state is saved in the run's checkpoints, and a resume continues it when they are
    given again (`resume`'s ``callbacks``).
    """
    factory = _factory(env)
    user_callbacks = check_callbacks(callbacks)
    if config is not None:
        if settings or env is not None:
            raise TypeError("give either a TrainConfig or settings as keywords, not both")
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"train takes a TrainConfig or settings as keywords, got a {type(config).__name__}")
        config = _with_paths(config)
        if config.resume is not None:
            settings = _resumed_settings(config)
            return _train(
                resume_config(config.resume, trust_run_code=config.trust_run_code, **settings), factory, user_callbacks
            )
    else:
        if settings.get("resume") is not None:
            run_dir, trust_run_code = settings.pop("resume"), settings.pop("trust_run_code", False)
            return resume(run_dir, env=env, trust_run_code=trust_run_code, callbacks=user_callbacks, **settings)
        if env is not None:
            settings["env"] = factory_path(factory) if factory is not None else env
        config = _with_paths(preset_config(preset, algo, **settings))
    return _train(config, factory, user_callbacks)


def resume(
    run_dir: str | Path,
    *,
    env: str | EnvFactory | None = None,
    trust_run_code: bool = False,
    callbacks: list[Callback] | None = None,
    **settings: Any,
) -> Run:
    """Continue the run in ``run_dir`` from its latest intact checkpoint (from zero when it has none yet).

    Only the settings that do not change the experiment may be given (``total_steps`` to extend it, ``device``,
    ``threads``, ...); ``env`` is the factory the run was trained with, when it cannot be imported.
    ``config.json`` is data: a ``module:NAME`` environment or agent it names is imported only when given again
    (``env="my_mod:Env-v0"``, ``algo=...``), with ``trust_run_code=True``, or when its module is listed in
    ACE_RL_TRUSTED_MODULES (ace_rl.trust).

    ``callbacks``: the run's callbacks, given again (the run directory names none); each continues from its state
    in the checkpoint. A callback whose state the checkpoint holds but that is not given is left out (one line
    says so). A run a callback stopped early is finished unless ``total_steps`` changes (ace_rl.runstate).
    """
    factory = _factory(env)
    user_callbacks = check_callbacks(callbacks)
    if isinstance(env, str):  # the run's task id, given again
        settings["env"] = env
    return _train(resume_config(run_dir, trust_run_code=trust_run_code, **settings), factory, user_callbacks)


def resume_config(run_dir: str | Path, *, trust_run_code: bool = False, **settings: Any) -> TrainConfig:
    """The configuration `resume` continues ``run_dir`` with, having checked it: the run's config.json with
    ``settings`` on top, refused in one ConfigError when a setting is of the wrong type, or would change the
    experiment (only RESUMABLE_SETTINGS may differ from config.json), or is invalid. The one check of what is given
    with a resume: ``ace-rl train --resume DIR ...`` passes the options it was given here."""
    if not isinstance(run_dir, (str, os.PathLike)):
        raise ConfigError(f"resume takes a run directory (a str or pathlib.Path), got a {type(run_dir).__name__}")
    run_dir = Path(run_dir)
    trust = CodeTrust.given(trust_run_code, [("env", settings.get("env")), ("algo", settings.get("algo"))])
    stored = load_run_config(run_dir, trust)
    unknown = sorted(set(settings) - {field.name for field in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"unknown settings {', '.join(unknown)}")
    requested = _with_paths(dataclasses.replace(stored, **settings, resume=run_dir, trust_run_code=trust_run_code))
    _check_types(requested)  # the types first: comparing with the stored settings needs values of the right type
    requested = resumed_config(stored, requested, set(settings))
    validate(requested)
    return requested


def _resumed_settings(config: TrainConfig) -> dict[str, Any]:
    """A whole configuration as the settings of `resume`: all but where the run is (its own directory, which
    ``resume`` names), what this call trusts, and what the run recorded about itself (RECORDED_SETTINGS)."""
    return {
        field.name: getattr(config, field.name)
        for field in dataclasses.fields(TrainConfig)
        if field.name not in {"run_dir", "resume", "trust_run_code", *RECORDED_SETTINGS}
    }


def _train(config: TrainConfig, factory: EnvFactory | None, callbacks: list[Callback]) -> Run:
    """Run the training loop on a checked configuration (a new run, or ``config.resume`` continued)."""
    from ace_rl.trainer import run_training  # the loop, its logs and PyTorch: loaded when a run trains

    run_dir = run_training(config, env_factory=factory, callbacks=callbacks)
    return Run(run_dir, load_run_config(run_dir, code_trust(config)))


def evaluate(
    policy: Policy | str | Path,
    env: gym.Env | str | EnvFactory | None = None,
    episodes: int = 10,
    seed: int = 0,
    checkpoint: str = "best",
    trust_run_code: bool = False,
    video: str | Path | None = None,
) -> Evaluation:
    """Run ``policy`` (a Policy, a run directory or a policy file) deterministically for ``episodes`` episodes.

    ``env``: the policy's own task when None, else a task id, a factory or an environment instance (used as
    given, Dict observations included; it is not closed). ``trust_run_code``: a policy file's own ``module:NAME``
    environment or agent may be imported (ace_rl.trust); a Policy keeps the trust it was loaded with. ``video``:
    also write the episodes to this MP4 file (the video extra; an instance must render ``rgb_array``); the returns
    are those without it. The same episodes as the evaluations during training (ace_rl.evaluation).
    """
    if episodes < 1:
        raise ConfigError(f"--episodes must be a positive integer, got {episodes}")
    if not isinstance(policy, Policy):
        policy = load_policy(policy, checkpoint, trust_run_code=trust_run_code)
    render_mode = None if video is None else "rgb_array"
    name: str | None = None  # how an environment's fault is named: its id, where the policy or the caller gave one
    if isinstance(env, gym.Env):
        environment = DistractorActions(env, policy.distractor_actions) if policy.distractor_actions else env
    elif env is None or isinstance(env, str):
        name = env or policy.env_id
        environment = policy.make_env(render_mode, env_id=env or None)
    else:
        environment = policy.make_env(render_mode, factory=_factory(env))
    try:
        with ExitStack() as stack:
            played = environment
            if video is not None:
                from ace_rl.video import recording  # imageio: only for videos

                played = stack.enter_context(recording(environment, Path(video)))
            seed_env(played, seed)
            return run_episodes(policy.predict, played, episodes, name)
    finally:
        if not isinstance(env, gym.Env):
            environment.close()


def export(
    policy: Policy | str | Path,
    out: str | Path,
    format: str = "onnx",
    checkpoint: str = "best",
    flat: bool = False,
    trust_run_code: bool = False,
) -> ExportReport:
    """Write ``policy`` (a Policy, a run directory or a policy file) as ONNX or TorchScript, checked against its
    `Policy.predict` first (`Policy.export`, ace_rl.export); a missing export extra is said before anything loads."""
    from ace_rl.export import check_format

    check_format(format)
    if not isinstance(policy, Policy):
        policy = load_policy(policy, checkpoint, trust_run_code=trust_run_code)
    return policy.export(out, format, flat=flat)


__all__ = [
    "RESUMABLE_SETTINGS",
    "Evaluation",
    "Policy",
    "Run",
    "TrainingStopped",
    "evaluate",
    "export",
    "load_policy",
    "resume",
    "resume_config",
    "train",
]
