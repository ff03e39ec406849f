"""The training loop: collect, fit the causal model, update, evaluate, log, checkpoint, resume.

Full-state checkpoints are written at the first episode boundary after every ``checkpoint_every`` env steps
(just before the environment is reset), where the whole state of a run is known: networks, optimizers,
replay, counters, every random-number state, and what best.pt holds (a resumed run restores that best.pt,
not one a killed process wrote after the checkpoint). Resuming from one continues exactly as if the run had not
stopped. On SIGINT or SIGTERM the run writes a checkpoint at once, mid-episode if need be, and exits; a run
resumed from such a checkpoint starts a new episode there, so from that point it is no longer identical to
an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple, cast

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from ace_rl.actions import action_box, action_names
from ace_rl.agents import Agent, CausallyWeighted, Resetting, agent_spec, make_agent
from ace_rl.callbacks import Callback, FinishedEpisode, TrainingContext, callback_keys
from ace_rl.causal import estimate_directlingam_seconds
from ace_rl.causal_cost import AUTO, causal_method_line, causal_variables, choose_causal_method
from ace_rl.checkpoint import (
    PolicyFiles,
    TrainingState,
    check_loadable,
    load_training_state,
    policy_env_step,
    remove_unusable_files,
    save_training_state,
    write_atomically,
)
from ace_rl.config import (
    ConfigError,
    TrainConfig,
    code_trust,
    config_from_json_dict,
    equal_sac_flags,
    equals_sac_reason,
    experiment_differences,
    to_json_dict,
    validate,
)
from ace_rl.envs import (
    EnvError,
    EnvFactory,
    check_env_behaviour,
    checked_reset,
    checked_step,
    make_env,
    observation_layout,
    observation_size,
    seed_env,
)
from ace_rl.evaluation import Evaluation
from ace_rl.logger import RunLogger
from ace_rl.loop_parts import (  # noqa: F401 - NonFiniteError is part of run_training's API
    BestPolicy,
    CausalFits,
    CheckpointSchedule,
    EpisodeLog,
    LossLog,
    NonFiniteError,
    PolicyEvaluator,
    ResetLog,
    VideoRecording,
    finite_parameters_or_raise,
)
from ace_rl.replay import ReplayBuffer, allocated_bytes
from ace_rl.rng import (
    capture_env_rng,
    capture_global_rng,
    restore_env_rng,
    restore_global_rng,
    run_thread_count,
    seed_everything,
)
from ace_rl.rundir import LOCK, RunDir, RunDirError, RunLock, write_actions_file  # noqa: F401 - RunDirError is part of run_training's API
from ace_rl.runstate import StopRecord, TrainingStopped, create_run_dir, read_stop_record, run_state, write_stop_record
from ace_rl.video import TrainingVideo, check_video_support
from ace_rl.wandb_logger import WandbLogger, check_wandb_usable

EVAL_SEED_OFFSET = 10_000  # the evaluation environment gets a seed of its own
VIDEO_SEED_OFFSET = 20_000  # and so does the environment that --video-every records
STATE_FORMAT = 1
TEST_KILL_POINT = "ACE_RL_TEST_SIGKILL_AT"


def _test_kill_point(point: str) -> None:
    """Test hook (tests/test_run_finishing.py): with ACE_RL_TEST_SIGKILL_AT=``point`` in its environment, the process
    kills itself here with SIGKILL, as an OOM kill or a lost machine would, so that a test can stop a run at a point
    no timing could reach. Points: ``final`` (before final.pt), ``last-state`` (after final.pt, before the last
    checkpoint)."""
    if os.environ.get(TEST_KILL_POINT) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def refuse_used_run_dir(run_dir: Path) -> None:
    """Refuse a directory that holds anything besides its lock, so nothing written is overwritten."""
    if any(path.name != LOCK for path in run_dir.iterdir()):
        advice = f" (or continue it with --resume {run_dir})" if RunDir(run_dir).is_run() else ""
        raise ConfigError(f"--run-dir {run_dir} already holds files; choose a new or empty directory{advice}")


def write_config(run_dir: Path, config: TrainConfig) -> None:
    text = json.dumps(to_json_dict(config), indent=2) + "\n"
    write_atomically(RunDir(run_dir).config, lambda file: file.write(text.encode()))


def make_run_env(config: TrainConfig, env_factory: EnvFactory | None = None) -> gym.Env:
    """The run's environment as its agent sees it (with --distractor-actions), unseeded."""
    return make_env(
        config.env,
        reward=config.reward,
        env_kwargs=config.env_kwargs,
        factory=env_factory,
        distractor_actions=config.distractor_actions,
    )


class EnvSizes(NamedTuple):
    """The sizes of a run's environment as its agent sees it: flattened observation values, action dimensions
    (distractors included)."""

    obs_dim: int
    action_dim: int

    @property
    def causal_variables(self) -> int:
        """The columns a causal fit sees: observation values, action dimensions and the reward."""
        return causal_variables(self.obs_dim, self.action_dim)


def probe_environment(config: TrainConfig, env_factory: EnvFactory | None = None) -> EnvSizes:
    """Build the run's environment, reset and step it once (one EnvError line when it cannot be trained on),
    and return its sizes."""
    probe = make_run_env(config, env_factory)
    try:
        check_env_behaviour(probe, config.env)
        obs_dim, action_dim = observation_size(probe), int(action_box(probe).shape[0])
        check_replay_memory(config.buffer_size, obs_dim, action_dim)
        return EnvSizes(obs_dim, action_dim)
    finally:
        probe.close()


def with_causal_method(config: TrainConfig, sizes: EnvSizes) -> TrainConfig:
    """A new run's configuration with its causal method chosen (``auto`` becomes directlingam or sink,
    ace_rl.causal_cost) and why, as config.json records them; a resumed run keeps what it recorded."""
    choice = choose_causal_method(config, sizes.obs_dim, sizes.action_dim)
    return dataclasses.replace(config, causal_method=choice.method, causal_method_reason=choice.reason)


def check_replay_memory(buffer_size: int, obs_dim: int, action_dim: int) -> None:
    """Refuse, in one line, a replay buffer larger than the machine's memory (before anything is written)."""
    needed = allocated_bytes(buffer_size, obs_dim, action_dim)
    # The physical memory, not what is free now: the buffer's pages are mapped in only as rows are written, so what
    # other processes hold at the start decides nothing, while a buffer larger than the memory itself is refused by
    # the kernel's allocation, or, where swap lets it through, slows the run to a crawl as it fills.
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if needed > memory:
        fitting = memory // allocated_bytes(1, obs_dim, action_dim)
        raise ConfigError(
            f"--buffer-size {buffer_size} with {obs_dim} observation values needs {needed / 1e9:.1f} GB of replay "
            f"memory, more than this machine's {memory / 1e9:.1f} GB; use a smaller --buffer-size (at most "
            f"{fitting // 2}, which leaves half the memory to the rest)"
        )


SLOW_FIT_SECONDS = 60.0  # a DirectLiNGAM fit estimated to be slower than this is announced at start


def check_causal_time_limit(config: TrainConfig, n_variables: int) -> None:
    """Refuse, before training, DirectLiNGAM fits estimated to exceed --causal-time-limit; announce slow ones."""
    if not agent_spec(config.algo).causal or config.causal_method != "directlingam":
        return
    estimate = estimate_directlingam_seconds(config.causal_samples, n_variables)
    if config.causal_time_limit is not None and estimate > config.causal_time_limit:
        raise ConfigError(
            f"--causal-method directlingam on {n_variables} variables and {config.causal_samples} samples would "
            f"take about {estimate:.3g} s per fit, over --causal-time-limit {config.causal_time_limit:g}; "
            "use --causal-method sink (far faster: the adaptive-lasso regression of the reward on all states and "
            "actions, DirectLiNGAM's reward row only where DirectLiNGAM orders the reward last) or raise the limit"
        )
    if config.causal_time_limit is None and estimate > SLOW_FIT_SECONDS:
        print(
            f"ace-rl: note: each DirectLiNGAM fit on {n_variables} variables will take about {estimate:.3g} s "
            f"(every {config.causal_interval} env steps); --causal-method sink fits the reward's row far faster, "
            "equal to DirectLiNGAM's only where DirectLiNGAM orders the reward last",
            file=sys.stderr,
        )


class Trainer:
    """Everything one run needs, and the state that a checkpoint captures.

    `run` repeats `step` (one environment step and what follows from it) and then `finish`. A step collects a
    transition, updates the agent, evaluates and ends the episode (checkpointing) when due, and calls the callbacks
    (ace_rl.callbacks: the loop's own parts of ace_rl.loop_parts, then the user's) after each of these; it stops on
    a signal or when a callback asks.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        resume_state: TrainingState | None = None,
        restart: bool = False,
        env_factory: EnvFactory | None = None,
        callbacks: list[Callback] | None = None,
    ) -> None:
        """``resume_state``: continue from a full-state checkpoint. ``restart``: the run directory holds a
        run that never reached its first checkpoint; start it again from zero, overwriting its logs.
        ``env_factory``: builds the environments instead of ``config.env`` (which then only names it).
        ``callbacks``: the user's, called after the loop's own parts; their states are restored from ``resume_state``.

        If a part fails (the logs on a full disk, the W&B run), what was opened before it is closed again: the
        environments, and the W&B run, which is finished as failed."""
        with ExitStack() as opened:
            self._set_up(config, run_dir, resume_state, restart, env_factory, callbacks or [], opened)
            opened.pop_all()

    def _set_up(
        self,
        config: TrainConfig,
        run_dir: Path,
        resume_state: TrainingState | None,
        restart: bool,
        env_factory: EnvFactory | None,
        user_callbacks: list[Callback],
        opened: ExitStack,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.device = pick_device(config.device)
        # Before the other environments: it chooses MuJoCo's OpenGL back-end.
        video = (
            TrainingVideo(
                run_dir,
                config.env,
                config.reward,
                config.seed + VIDEO_SEED_OFFSET,
                config.env_kwargs,
                env_factory,
                config.distractor_actions,
            )
            if config.video_every > 0
            else None
        )
        if video is not None:
            opened.callback(video.close)
        self.env = make_run_env(config, env_factory)
        opened.callback(self.env.close)
        self.eval_env = make_run_env(config, env_factory)
        opened.callback(self.eval_env.close)
        obs_dim = observation_size(self.env)
        observation_space = cast(gym.spaces.Box, self.env.observation_space)  # make_env's flat Box
        action_space = action_box(self.env)
        action_dim = int(action_space.shape[0])
        if config.causal_method == AUTO:  # a Trainer made directly, not by train(), which chooses it first
            config = self.config = with_causal_method(config, EnvSizes(obs_dim, action_dim))
        if config.threads > 0:  # train() holds the count for the run's life (rng.run_thread_count)
            torch.set_num_threads(config.threads)

        seed_everything(config.seed)  # the built-in agents draw from their own generators; other modules' may not
        self.agent: Agent = make_agent(config, obs_dim, action_dim, action_space.low, action_space.high, self.device)
        self.causal_agent: CausallyWeighted | None = None  # the agent, when the loop fits causal weights for it
        if agent_spec(config.algo).causal and config.causal_method != "none":
            if not isinstance(self.agent, CausallyWeighted):
                raise TypeError(f"--algo {config.algo} is registered with causal=True but has no set_causal_weights")
            self.causal_agent = self.agent
        self.replay = ReplayBuffer(config.buffer_size, obs_dim, action_dim, config.seed)
        self.env_step = 0
        self.episode = 0
        self.checkpoints = CheckpointSchedule(config.checkpoint_every)
        self.elapsed_before = 0.0  # seconds trained by earlier processes of this run
        self.last_state_path: Path | None = None
        self.stop_signal: str | None = None
        self.context = TrainingContext(self)
        self.episode_return, self.episode_length = 0.0, 0
        self.episode_running = False  # whether the current episode has taken a step

        # The environment is reset at the start of the step after an episode ends, so that a checkpoint
        # written at an episode end (or at the end of the run) sits just before that reset.
        self.reset_pending = False
        if resume_state is None:
            self.obs = seed_env(self.env, config.seed)
            seed_env(self.eval_env, config.seed + EVAL_SEED_OFFSET)
        else:
            self.load_state_dict(resume_state)
            if resume_state["mid_episode"]:
                self.replay.end_episode()  # the interrupted episode ends here, as if truncated
            self.reset_pending = True
        self.resumed = resume_state is not None
        continues = resume_state is not None or restart
        wandb = None
        if config.wandb_project is not None:
            wandb = WandbLogger(
                run_dir,
                to_json_dict(config),
                config.wandb_project,
                config.wandb_entity,
                config.wandb_group,
                config.wandb_tags,
            )
            opened.callback(wandb.finish, failed=True)
        names = action_names(self.env)
        write_actions_file(RunDir(run_dir).actions, names, config.distractor_actions)
        self.logger = RunLogger(
            run_dir, action_dim, resume_after_step=self.env_step if continues else None, wandb=wandb
        )
        self.policy_files = PolicyFiles(run_dir, self._policy_metadata(config, observation_space, action_space))
        self.evaluator = PolicyEvaluator(config, self.eval_env, self.logger)
        self.best_policy = BestPolicy(self.policy_files)
        # The loop's own parts (ace_rl.loop_parts) in the order a step calls them, then the user's.
        own: list[Callback] = []
        if self.causal_agent is not None:
            own.append(CausalFits(config, self.causal_agent, self.logger, names))
        own.append(LossLog(config, self.logger, self.device))
        if isinstance(self.agent, Resetting):
            own.append(ResetLog(self.agent, self.logger))
        own += [self.best_policy, EpisodeLog(self.logger)]
        if video is not None:
            own.append(VideoRecording(video, config.video_every, self.logger))
        self.video = video
        self.user_callbacks = list(user_callbacks)
        self.callbacks = own + self.user_callbacks
        self.keyed_callbacks = list(zip(callback_keys(self.callbacks), self.callbacks))
        if resume_state is not None:
            self.evaluator.last_return = resume_state["last_eval_return"]
            self.best_policy.load_state_dict(resume_state)
            self._load_user_callbacks(resume_state.get("callbacks", {}))
        self.started = time.perf_counter()

    def _policy_metadata(
        self, config: TrainConfig, observation_space: gym.spaces.Box, action_space: gym.spaces.Box
    ) -> dict[str, Any]:
        """What best.pt and final.pt hold besides the weights (ace_rl.checkpoint.POLICY_ENTRIES and more)."""
        return {
            "env": config.env,
            "env_kwargs": config.env_kwargs,
            "reward": config.reward,
            "algo": config.algo,
            "seed": config.seed,
            "distractor_actions": config.distractor_actions,
            "obs_dim": observation_size(self.env),
            "action_dim": int(action_space.shape[0]),
            "hidden_size": config.hidden_size,
            "action_low": torch.as_tensor(action_space.low, dtype=torch.float32),
            "action_high": torch.as_tensor(action_space.high, dtype=torch.float32),
            # What a policy needs to take the env's observations, and to check an export, without building the env.
            "observation_layout": observation_layout(self.env),
            "observation_low": torch.as_tensor(observation_space.low, dtype=torch.float32).flatten(),
            "observation_high": torch.as_tensor(observation_space.high, dtype=torch.float32).flatten(),
        }

    def _load_user_callbacks(self, states: dict[str, dict[str, Any]]) -> None:
        """Each user callback continues from its state in the checkpoint (one found under its key); a state whose
        callback was not given again is left out, said in one line (where it held anything)."""
        keys = callback_keys(self.user_callbacks)
        for key, callback in zip(keys, self.user_callbacks):
            if key in states:
                callback.load_state_dict(states[key])
        for key in sorted(key for key in set(states) - set(keys) if states[key]):
            print(
                f"ace-rl: note: the checkpoint holds the state of callback {key}, which was not given again; "
                "continuing without it",
                file=sys.stderr,
            )

    @property
    def last_evaluation(self) -> Evaluation | None:
        """The latest evaluation of this process (ace_rl.callbacks.TrainingContext.last_evaluation)."""
        return self.evaluator.last

    # ----------------------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------------------
    def state_dict(self, mid_episode: bool) -> TrainingState:
        best = self.best_policy.state_dict()
        return {
            "format": STATE_FORMAT,
            "config": to_json_dict(self.config),
            "env_step": self.env_step,
            "episode": self.episode,
            "mid_episode": mid_episode,
            "best_return": best["best_return"],
            "best_policy": best["best_policy"],
            "last_eval_return": self.evaluator.last_return,
            "next_checkpoint": self.checkpoints.next,
            "elapsed_seconds": self.elapsed(),
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict(),
            "rng": capture_global_rng(),
            "env_rng": capture_env_rng(self.env),
            "eval_env_rng": capture_env_rng(self.eval_env),
            "callbacks": {
                key: callback.state_dict()
                for key, callback in zip(callback_keys(self.user_callbacks), self.user_callbacks)
            },
        }

    def load_state_dict(self, state: TrainingState) -> None:
        """The loop's own state; the callbacks' follow once they are built (`_set_up`)."""
        if state.get("format") != STATE_FORMAT:
            raise ConfigError(f"checkpoint format {state.get('format')} is not supported (expected {STATE_FORMAT})")
        self.env_step = int(state["env_step"])
        self.episode = int(state["episode"])
        self.checkpoints.next = int(state["next_checkpoint"])
        self.elapsed_before = float(state["elapsed_seconds"])
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        restore_global_rng(state["rng"])
        restore_env_rng(self.env, state["env_rng"])
        restore_env_rng(self.eval_env, state["eval_env_rng"])

    def restore_best_policy(self, state: TrainingState) -> str | None:
        """best.pt as of the checkpoint ``state`` (BestPolicy.restore); what changed, if anything."""
        return self.best_policy.restore("best_policy" in state, self.agent.actor)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def save_state(self, mid_episode: bool) -> None:
        finite_parameters_or_raise(self.agent, self.env_step, str(self.last_state_path or "none"))
        self.last_state_path = save_training_state(self.run_dir, self.env_step, self.state_dict(mid_episode))
        self._call("on_checkpoint", self.last_state_path)

    def _call(self, hook: str, *args: Any) -> None:
        """Call ``hook`` of every callback in order, telling the context whose call it is (for a stop request)."""
        for key, callback in self.keyed_callbacks:
            self.context.calling(key)
            getattr(callback, hook)(self.context, *args)

    # ----------------------------------------------------------------------------------------------
    # The loop
    # ----------------------------------------------------------------------------------------------
    def run(self) -> None:
        config = self.config
        progress = tqdm(
            total=config.total_steps, initial=self.env_step, unit="step", disable=not config.progress, mininterval=1.0
        )
        # Signal handlers can only be set in the main thread; elsewhere (a notebook's or a service's thread) the
        # run stops on an exception only, and continues from its last periodic checkpoint.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous_handlers = (
            {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
            if in_main_thread
            else {}
        )
        try:
            self._call("on_training_start")
            if self.resumed and self.last_state_path is not None:
                # The checkpoint holds the callbacks' states from before its own on_checkpoint call: made again here,
                # so that they continue as in the uninterrupted run.
                self._call("on_checkpoint", self.last_state_path)
            while self.env_step < config.total_steps and self.context.stop_request is None:
                try:
                    self.step()
                except EnvError as error:  # the environment failed mid-run: say what of the run is kept
                    raise EnvError(f"{error}; last checkpoint: {self.last_state_path or 'none yet'}") from error
                progress.update(1)
                last_return = self.evaluator.last_return
                if last_return is not None and self.env_step % config.eval_every == 0:
                    progress.set_postfix(eval_return=f"{last_return:.1f}", refresh=False)
            self.finish()
            self._call("on_training_end")
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            progress.close()

    def step(self) -> None:
        """One environment step and everything that is due after it."""
        config = self.config
        if self.reset_pending:
            self.obs = checked_reset(self.env, config.env, f"after env step {self.env_step}")
            self.reset_pending = False
        self.env_step += 1
        next_obs, terminated, truncated = self.collect()
        self._call("on_transition")
        if len(self.replay) >= config.batch_size and (config.warmup_updates or self.env_step > config.start_steps):
            self.update_agent()
        self._call("on_step")
        if self.evaluator.due(self.env_step):
            self._call("on_evaluation", self.evaluator.run(self.agent, self.env_step, self.elapsed()))
        episode_over = terminated or truncated
        if episode_over:
            self.end_episode(terminated)
        # At the run's last step, or where a callback asked to stop, a stop waits for finish(), which writes final.pt
        # and the last checkpoint.
        if self.stop_signal is not None and self.context.stop_request is None and self.env_step < config.total_steps:
            self.save_state(mid_episode=not episode_over)
            raise TrainingStopped(
                f"stopped by {self.stop_signal} at env step {self.env_step}; checkpoint {self.last_state_path}; "
                f"continue with: ace-rl train --resume {self.run_dir}"
            )
        if episode_over:
            self.reset_pending = True
        else:
            self.obs = next_obs

    def collect(self) -> tuple[np.ndarray, bool, bool]:
        """Act (uniformly at random during the start steps), step the environment, store the transition."""
        if self.env_step <= self.config.start_steps:
            action = self.env.action_space.sample()
        else:
            action = self.agent.act(self.obs)
        next_obs, reward, terminated, truncated, _ = checked_step(
            self.env, action, self.config.env, f"at env step {self.env_step}"
        )
        # Only a terminal state stops bootstrapping; a time limit (truncation) does not.
        self.replay.add(self.obs, action, reward, next_obs, terminated, truncated)
        self.episode_return += reward
        self.episode_length += 1
        self.episode_running = True
        return next_obs, terminated, truncated

    def update_agent(self) -> None:
        """``updates_per_step`` updates on fresh batches, each followed by the callbacks' ``on_update``."""
        for _ in range(self.config.updates_per_step):
            self._call("on_update", self.agent.update(self.replay.sample(self.config.batch_size, self.device)))

    def end_episode(self, terminated: bool) -> None:
        """The callbacks' ``on_episode_end``; a full-state checkpoint when one is due (just before the reset)."""
        self.episode += 1
        finished = FinishedEpisode(self.episode, float(self.episode_return), self.episode_length, terminated)
        self.episode_return, self.episode_length = 0.0, 0
        self.episode_running = False
        self._call("on_episode_end", finished)
        # The checkpoint at the run's total is finish()'s (the schedule still advances, as in a longer run).
        if self.checkpoints.due(self.env_step) and self.env_step < self.config.total_steps:
            self.save_state(mid_episode=False)

    def finish(self) -> None:
        """The final policy, then a last full-state checkpoint (from which a longer run can continue).

        In this order, a checkpoint at the run's total says that final.pt was written: a run stopped before it is
        not done (ace_rl.runstate) and `--resume` finishes it. An agent state that could not be loaded again is
        refused before final.pt is written. A run a callback stopped records that first (ace_rl.runstate
        .StopRecord), so that with its final.pt and last checkpoint it is done, as at its total."""
        check_loadable({"agent": self.agent.state_dict()})
        stop = self.context.stop_request if self.env_step < self.config.total_steps else None
        if stop is not None:
            write_stop_record(
                self.run_dir, StopRecord(self.env_step, self.config.total_steps, stop.callback, stop.reason)
            )
        _test_kill_point("final")
        finite_parameters_or_raise(self.agent, self.env_step, str(self.last_state_path or "none"))
        self.policy_files.write("final", self.agent.actor, self.env_step, self.evaluator.last_return)
        _test_kill_point("last-state")
        self.save_state(mid_episode=self.episode_running)
        if stop is not None:
            print(
                f"ace-rl: stopped early by callback {stop.callback} at env step {self.env_step} of "
                f"{self.config.total_steps}: {stop.reason}",
                file=sys.stderr,
            )

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stop_signal = signal.Signals(signum).name

    def close(self, failed: bool = False) -> None:
        """``failed``: the run stopped on an error (its W&B run is marked failed)."""
        self.logger.close(failed=failed)
        self.env.close()
        self.eval_env.close()
        if self.video is not None:
            self.video.close()


def run_training(
    config: TrainConfig, env_factory: EnvFactory | None = None, callbacks: list[Callback] | None = None
) -> Path:
    """Train as configured (or continue the run named by ``config.resume``) and return the run directory.

    Everything that can be checked (settings, device, environment, the run directory) is checked before
    anything is written; the run directory is locked for the life of the process. ``env_factory`` builds the
    environments instead of ``config.env``. ``callbacks``: the user's (ace_rl.callbacks), called after the loop's
    own parts. ``config`` itself is left as it was given.
    """
    config = dataclasses.replace(config)
    validate(config)
    with run_thread_count(config.threads):
        return _train(config, env_factory, callbacks or [])


def _train(config: TrainConfig, env_factory: EnvFactory | None, callbacks: list[Callback]) -> Path:
    pick_device(config.device)
    if config.wandb_project is not None:
        check_wandb_usable()
    if config.video_every > 0:
        check_video_support(config.env)  # picks MuJoCo's OpenGL back-end, which must precede any environment
    if config.resume is not None:
        run_dir = config.resume
        with RunLock(run_dir):
            trainer = _resumed_trainer(config, run_dir, env_factory, callbacks)
            _run(trainer, resumed=True)
        return run_dir
    # Unknown environments and impossible settings fail before anything is written.
    sizes = probe_environment(config, env_factory)
    config = with_causal_method(config, sizes)
    check_causal_time_limit(config, sizes.causal_variables)
    run_dir = create_run_dir(config.run_dir, config)
    config.run_dir = run_dir
    with RunLock(run_dir):
        refuse_used_run_dir(run_dir)
        write_config(run_dir, config)
        trainer = Trainer(config, run_dir, env_factory=env_factory, callbacks=callbacks)
        _run(trainer)
    return run_dir


def _resumed_trainer(
    config: TrainConfig, run_dir: Path, env_factory: EnvFactory | None, callbacks: list[Callback]
) -> Trainer:
    """A trainer that continues the locked run in ``run_dir`` from its latest intact checkpoint (or from
    zero, when it was stopped before its first checkpoint; or only finishes it, when it was stopped at its total
    before final.pt was written).

    Nothing is written before everything that can be checked has passed (the checkpoint read, its settings
    compared, the environments built and the agent loaded by Trainer before it opens the logs): a refused
    `--resume` changes no file, config.json included."""
    # The lock is ours: what the directory is apart from it (ace_rl.runstate, as a sweep's worker asks it).
    restarts = run_state(run_dir, config.total_steps, check_lock=False).restarts
    state: TrainingState | None = None
    path: Path | None = None
    if not restarts:
        state, path, skipped = load_training_state(run_dir)
        for problem in skipped:
            print(f"ace-rl: skipped checkpoint {problem}", file=sys.stderr)
        stored = config_from_json_dict(state.get("config"), f"checkpoint {path}", code_trust(config))
        differences = experiment_differences(stored, config)
        if differences:
            raise ConfigError(
                f"--resume {run_dir}: config.json differs from the configuration stored in {path.name} in "
                + ", ".join(f"{name} ({getattr(config, name)!r} vs {getattr(stored, name)!r})" for name in differences)
                + "; restore config.json or start a new run"
            )
        check_not_finished(run_dir, int(state["env_step"]), config.total_steps)
    trainer = Trainer(
        config, run_dir, resume_state=state, restart=restarts, env_factory=env_factory, callbacks=callbacks
    )
    try:
        for note in remove_unusable_files(run_dir, resumed_from=path):
            print(f"ace-rl: removed {note}", file=sys.stderr)
        stop = read_stop_record(run_dir)
        if stop is not None:  # the run goes on: whatever stop it records is past
            RunDir(run_dir).stop_record.unlink()
            if state is not None and int(state["env_step"]) >= stop.env_step:
                print(
                    f"ace-rl: continuing past the early stop at env step {stop.env_step} (callback {stop.callback})",
                    file=sys.stderr,
                )
        if restarts:
            print(f"ace-rl: {run_dir} has no checkpoint yet; starting it again from env step 0", file=sys.stderr)
        write_config(run_dir, config)
        if state is not None:
            trainer.last_state_path = path
            best_note = trainer.restore_best_policy(state)
            if best_note is not None:
                print(f"ace-rl: {best_note}", file=sys.stderr)
    except BaseException:
        trainer.close(failed=True)
        raise
    return trainer


def check_not_finished(run_dir: Path, reached: int, total_steps: int) -> None:
    """Refuse to continue a run whose latest checkpoint is at ``reached`` env steps, at or past ``total_steps``,
    unless it was stopped there before its final.pt was written: then resuming only finishes it. A run a callback
    stopped early (its StopRecord, ace_rl.runstate) is finished at the step it stopped at, unless ``total_steps``
    differs from the total it was stopped under."""
    stop = read_stop_record(run_dir)
    if (
        stop is not None
        and stop.total_steps == total_steps
        and reached >= stop.env_step
        and policy_env_step(RunDir(run_dir).policy("final")) == reached
    ):
        raise ConfigError(
            f"the run in {run_dir} was stopped early at env step {stop.env_step} by callback {stop.callback} "
            f"({stop.reason}); it is finished: pass a --total-steps other than {total_steps} (above {reached}) "
            "to continue it"
        )
    if reached < total_steps:
        return
    unfinished = policy_env_step(RunDir(run_dir).policy("final")) != reached
    if reached == total_steps and unfinished:
        print(
            f"ace-rl: {run_dir} reached {reached} env steps but has no final.pt of them; finishing it", file=sys.stderr
        )
        return
    finish = f"pass --total-steps {reached} to finish it (write its final.pt) or a larger one to continue it"
    raise ConfigError(
        f"the run in {run_dir} already reached {reached} env steps; "
        + (finish if unfinished else "pass a larger --total-steps to continue it")
    )


def _run(trainer: Trainer, resumed: bool = False) -> None:
    method = causal_method_line(trainer.config, resumed)
    if method is not None:  # said once the run is set up, as the note below
        print(f"ace-rl: {method}", file=sys.stderr)
    same_as_sac = equals_sac_reason(trainer.config)
    if same_as_sac is not None:  # said once the run is set up, so that a refused start prints only its error
        print(
            f"ace-rl: note: this ACE run makes {same_as_sac}: it computes exactly what "
            f"{equal_sac_flags(trainer.config)} does",
            file=sys.stderr,
        )
    try:
        trainer.run()
    except TrainingStopped:  # a stop asked for by a signal: the run can be resumed, it did not fail
        trainer.close()
        raise
    except BaseException:
        trainer.close(failed=True)
        raise
    trainer.close()
