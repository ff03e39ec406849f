"""The parts that hang off the training loop, one job each. Each can be built and tested without a Trainer.

The loop's own callbacks (ace_rl.callbacks: the same protocol as a user's, called before the user's):

- `CausalFits`: the causal model's fit every ``--causal-interval`` env steps, handed to the agent;
- `LossLog`: the latest update's losses, checked to be finite and written every ``--log-every`` steps;
- `ResetLog`: the agent's soft resets into resets.csv;
- `BestPolicy`: best.pt at every new best evaluation return (its state is in every full-state checkpoint);
- `EpisodeLog`: episodes.csv;
- `VideoRecording`: ``--video-every``'s MP4 files.

And two schedules the loop itself follows, since what they start is what callbacks react to:

- `PolicyEvaluator`: deterministic evaluation episodes and metrics.csv, whose result goes to ``on_evaluation``;
- `CheckpointSchedule`: when the next full-state checkpoint is due (written at an episode's end), which holds
  every callback's state and so is not itself a callback.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from ace_rl.agents import Agent, AgentError, CausallyWeighted, Resetting
from ace_rl.callbacks import Callback, FinishedEpisode, TrainingContext
from ace_rl.causal import CausalTimeLimitError, causal_weights
from ace_rl.checkpoint import KeptBestPolicy, PolicyFiles, recover_best_policy
from ace_rl.config import ConfigError, TrainConfig
from ace_rl.errors import RUN_FAULT, AceRlError
from ace_rl.evaluation import Evaluation, run_episodes
from ace_rl.logger import RunLogger
from ace_rl.replay import ReplayBuffer
from ace_rl.rundir import RunDir
from ace_rl.runstate import safe_name
from ace_rl.video import TrainingVideo


class NonFiniteError(AceRlError, RuntimeError):
    """A loss or a parameter became NaN or infinite; training stopped before saving it."""

    exit_code = RUN_FAULT


class PolicyEvaluator:
    """Every ``--eval-every`` env steps and at the last one: ``--eval-episodes`` deterministic episodes on the
    evaluation environment, a row of metrics.csv, TensorBoard (and W&B) scalars. The loop runs it when due and hands
    its result to the callbacks' ``on_evaluation`` (`BestPolicy` among them)."""

    def __init__(self, config: TrainConfig, eval_env: gym.Env, logger: RunLogger) -> None:
        self.every = config.eval_every
        self.env_id = config.env
        self.total_steps = config.total_steps
        self.episodes = config.eval_episodes
        self.eval_env = eval_env
        self.logger = logger
        self.last_return: float | None = None
        self.last: Evaluation | None = None
        """The latest evaluation of this process (None after a resume until the next one)."""

    def due(self, env_step: int) -> bool:
        return env_step % self.every == 0 or env_step == self.total_steps

    def run(self, agent: Agent, env_step: int, wall_time: float) -> Evaluation:
        evaluation = run_episodes(
            lambda obs: agent.act(obs, deterministic=True), self.eval_env, self.episodes, self.env_id
        )
        mean_return, std_return, success_rate = evaluation.mean, evaluation.std, evaluation.success_rate
        self.last_return, self.last = mean_return, evaluation
        self.logger.metrics.write(
            env_step=env_step,
            updates=agent.updates,
            eval_return_mean=mean_return,
            eval_return_std=std_return,
            eval_success_rate="" if success_rate is None else success_rate,
            wall_time=wall_time,
        )
        scalars = {"eval/return_mean": mean_return, "eval/return_std": std_return}
        if success_rate is not None:
            scalars["eval/success_rate"] = success_rate
        self.logger.scalars(scalars, env_step)
        if self.logger.wandb is not None:
            self.logger.wandb.tables(env_step)
        return evaluation


class BestPolicy(Callback):
    """best.pt whenever an evaluation's mean return is the best so far.

    The best policy's weights are also kept here (and so in every full-state checkpoint, under ``best_policy``
    and ``best_return`` as checkpoints have always held them), so that a resumed run restores the best.pt of its
    checkpoint's time, not one written after it by the process that was killed (`restore`)."""

    def __init__(self, policy_files: PolicyFiles) -> None:
        self.policy_files = policy_files
        self.best_return = -math.inf
        self.best_policy: KeptBestPolicy | None = None

    def on_evaluation(self, context: TrainingContext, evaluation: Evaluation) -> None:
        if evaluation.mean <= self.best_return:
            return
        self.best_return = evaluation.mean
        actor = context.agent.actor
        finite_parameters_or_raise(context.agent, context.env_step, str(context.last_checkpoint or "none"))
        self.policy_files.write("best", actor, context.env_step, evaluation.mean)
        self.best_policy = KeptBestPolicy(
            actor={name: value.detach().cpu().clone() for name, value in actor.state_dict().items()},
            env_step=context.env_step,
            eval_return_mean=evaluation.mean,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"best_return": self.best_return, "best_policy": self.best_policy}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_return = float(state["best_return"])
        self.best_policy = state.get("best_policy")

    def restore(self, checkpoint_keeps_best: bool, actor: nn.Module) -> str | None:
        """After `load_state_dict` of a checkpoint: best.pt as of that checkpoint (ace_rl.checkpoint
        .recover_best_policy); what changed, if anything. ``actor``: the agent's actor, copied to write the kept
        weights."""
        path = RunDir(self.policy_files.run_dir).policy("best")
        recovery = recover_best_policy(path, self.best_policy, self.best_return, checkpoint_keeps_best)
        self.best_policy, self.best_return = recovery.kept, recovery.best_return
        if recovery.rewrite and recovery.kept is not None:
            best_actor = copy.deepcopy(actor)
            best_actor.load_state_dict(recovery.kept["actor"])
            self.policy_files.write("best", best_actor, recovery.kept["env_step"], recovery.kept["eval_return_mean"])
        return recovery.note


class CausalFits(Callback):
    """Every ``--causal-interval`` env steps once the replay holds ``--causal-samples`` transitions: fit the causal
    model on the latest ones (before that step's updates), hand the weights to the agent, and log them
    (causal_weights.csv, TensorBoard)."""

    def __init__(
        self, config: TrainConfig, agent: CausallyWeighted, logger: RunLogger, action_names: list[str]
    ) -> None:
        self.interval = config.causal_interval
        self.samples = config.causal_samples
        self.method = config.causal_method
        self.target = config.causal_target
        self.time_limit = config.causal_time_limit
        self.agent = agent
        self.logger = logger
        # TensorBoard's causal/w0_thigh_joint; tasks without names keep causal/w0.
        self.tags = [
            f"causal/w{i}" + ("" if name == f"a{i}" else "_" + safe_name(name)) for i, name in enumerate(action_names)
        ]

    def due(self, env_step: int, replay_size: int) -> bool:
        return env_step % self.interval == 0 and replay_size >= self.samples

    def on_transition(self, context: TrainingContext) -> None:
        if self.due(context.env_step, len(context.replay)):
            self.fit(context.replay, context.env_step)

    def fit(self, replay: ReplayBuffer, env_step: int) -> None:
        try:
            fit = causal_weights(
                *replay.latest(self.samples), method=self.method, time_limit=self.time_limit, target=self.target
            )
        except CausalTimeLimitError as error:
            raise ConfigError(f"causal fit at env step {env_step}: {error}") from None
        self.agent.set_causal_weights(fit.weights)
        weights = {f"w{i}": float(w) for i, w in enumerate(fit.weights)}
        self.logger.causal.write(
            env_step=env_step,
            **weights,
            method=fit.method,
            seconds=fit.seconds,
            dropped_columns=len(fit.dropped),
            note=fit.note,
        )
        self.logger.scalars(
            {
                **dict(zip(self.tags, weights.values())),
                "causal/seconds": fit.seconds,
                "causal/dropped_columns": len(fit.dropped),
            },
            env_step,
        )


class LossLog(Callback):
    """The latest losses of the agent's updates: checked to be finite (after every update on a CPU; on a GPU only
    when written, since reading a loss there synchronises it) and written every ``--log-every`` env steps."""

    def __init__(self, config: TrainConfig, logger: RunLogger, device: torch.device) -> None:
        self.every = config.log_every
        self.algo = config.algo
        self.logger = logger
        self.check_every_update = device.type == "cpu"
        self.pending: dict[str, torch.Tensor] = {}
        self.first_step = 0  # the env step this process starts at (a resumed run's), for the steps-per-second rate
        self.started = time.perf_counter()

    def on_training_start(self, context: TrainingContext) -> None:
        self.first_step, self.started = context.env_step, time.perf_counter()

    def on_update(self, context: TrainingContext, losses: Mapping[str, torch.Tensor]) -> None:
        self.add(losses, context.env_step, context.updates, str(context.last_checkpoint or "none yet"))

    def on_step(self, context: TrainingContext) -> None:
        if self.due(context.env_step):
            self.write(context.env_step, context.updates, str(context.last_checkpoint or "none yet"))

    def add(self, metrics: Mapping[str, torch.Tensor], env_step: int, updates: int, last_good: str) -> None:
        """``last_good``: the latest checkpoint, named in the error when a loss is not finite."""
        if not isinstance(metrics, dict) or not all(isinstance(value, torch.Tensor) for value in metrics.values()):
            got = (
                "{" + ", ".join(f"{name!r}: {type(value).__name__}" for name, value in metrics.items()) + "}"
                if isinstance(metrics, dict)
                else type(metrics).__name__
            )
            raise AgentError(
                f"--algo {self.algo}: the agent's update returned {got}; it must return its losses as a dict of "
                "tensors (name: torch.Tensor), which are read only when logged"
            )
        self.pending.update(metrics)
        if self.check_every_update:
            self.check_finite(metrics, env_step, updates, last_good)

    def due(self, env_step: int) -> bool:
        return env_step % self.every == 0 and bool(self.pending)

    def write(self, env_step: int, updates: int, last_good: str) -> None:
        if not self.check_every_update:
            self.check_finite(self.pending, env_step, updates, last_good)
        self.logger.scalars({name: float(value) for name, value in self.pending.items()}, env_step)
        seconds = time.perf_counter() - self.started
        self.logger.scalars({"train/steps_per_second": (env_step - self.first_step) / seconds}, env_step)

    def check_finite(self, metrics: Mapping[str, torch.Tensor], env_step: int, updates: int, last_good: str) -> None:
        for name, value in metrics.items():
            if not torch.isfinite(value).all():
                raise NonFiniteError(
                    f"{name} became {float(value)} at env step {env_step} (update {updates}); "
                    f"training stopped. Last good checkpoint: {last_good}"
                )


class ResetLog(Callback):
    """A soft reset an update made (ACE's dormancy-guided reset): a row of resets.csv and TensorBoard scalars."""

    def __init__(self, agent: Resetting, logger: RunLogger) -> None:
        self.agent = agent
        self.logger = logger

    def on_update(self, context: TrainingContext, losses: Mapping[str, torch.Tensor]) -> None:
        reset = self.agent.last_reset
        if reset is None:
            return
        self.logger.resets.write(
            env_step=context.env_step,
            update=reset.update,
            dormancy_ratio=reset.dormancy_ratio,
            reset_factor=reset.factor,
            kind=reset.kind,
        )
        self.logger.scalars(
            {"reset/dormancy_ratio": reset.dormancy_ratio, "reset/factor": reset.factor}, context.env_step
        )


class EpisodeLog(Callback):
    """Each finished training episode: a row of episodes.csv and its return in TensorBoard."""

    def __init__(self, logger: RunLogger) -> None:
        self.logger = logger

    def on_episode_end(self, context: TrainingContext, episode: FinishedEpisode) -> None:
        self.logger.episodes.write(
            env_step=context.env_step,
            episode=episode.number,
            **{"return": episode.episode_return},
            length=episode.length,
            terminated=int(episode.terminated),
            wall_time=context.elapsed_seconds,
        )
        self.logger.scalars({"train/episode_return": episode.episode_return}, context.env_step)


class VideoRecording(Callback):
    """``--video-every N``: one deterministic episode every N env steps into RUN/videos/step-XXXXXXXX.mp4,
    TensorBoard and W&B (ace_rl.video.TrainingVideo, on an environment of its own)."""

    def __init__(self, video: TrainingVideo, every: int, logger: RunLogger) -> None:
        self.video = video
        self.every = every
        self.logger = logger

    def on_step(self, context: TrainingContext) -> None:
        if context.env_step % self.every != 0:
            return
        agent = context.agent
        clip = self.video.record(
            lambda obs: agent.act(obs, deterministic=True), context.env_step, self.logger.tensorboard
        )
        if self.logger.wandb is not None:
            self.logger.wandb.video(clip.path, context.env_step)


class CheckpointSchedule:
    """A full-state checkpoint is due at the end of the first episode at or after each multiple of
    ``--checkpoint-every`` env steps (at an episode's end the environment needs no state of its own)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.next = every

    def due(self, env_step: int) -> bool:
        if env_step < self.next:
            return False
        self.next = (env_step // self.every + 1) * self.every
        return True


def finite_parameters_or_raise(agent: Agent, env_step: int, last_good: str) -> None:
    """Refuse to save parameters that are NaN or infinite: the last checkpoint stays the last good state."""
    for name, param in agent.trained_parameters():
        if not torch.isfinite(param).all():
            raise NonFiniteError(
                f"parameter {name} is not finite at env step {env_step}; not saving it. Last good checkpoint: {last_good}"
            )


__all__ = [
    "BestPolicy",
    "CausalFits",
    "CheckpointSchedule",
    "EpisodeLog",
    "LossLog",
    "NonFiniteError",
    "PolicyEvaluator",
    "ResetLog",
    "VideoRecording",
    "finite_parameters_or_raise",
]
