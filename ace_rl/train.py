"""The training loop: collect, fit the causal model, update, evaluate, log, checkpoint, resume.

Full-state checkpoints are written at the first episode boundary after every ``checkpoint_every`` env steps
(just before the environment is reset), where the whole state of a run is known: networks, optimizers,
replay, counters and every random-number state. Resuming from one continues exactly as if the run had not
stopped. On SIGINT or SIGTERM the run writes a checkpoint at once, mid-episode if need be, and exits; a run
resumed from such a checkpoint starts a new episode there, so from that point it is no longer identical to
an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ace_rl.ace import ACE
from ace_rl.causal import CausalTimeLimitError, causal_weights, estimate_directlingam_seconds
from ace_rl.checkpoint import load_training_state, save_policy, save_training_state, write_atomically
from ace_rl.config import ConfigError, TrainConfig, to_json_dict, validate
from ace_rl.envs import make_env, observation_size, seed_env
from ace_rl.evaluate import run_episodes
from ace_rl.logger import RunLogger
from ace_rl.replay import ReplayBuffer
from ace_rl.rng import capture_env_rng, capture_global_rng, restore_env_rng, restore_global_rng, seed_everything

EVAL_SEED_OFFSET = 10_000  # the evaluation environment gets a seed of its own
STATE_FORMAT = 1


class NonFiniteError(RuntimeError):
    """A loss or a parameter became NaN or infinite; training stopped before saving it."""


class TrainingStopped(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was written and the run can be resumed."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    return device


def default_run_dir(config: TrainConfig) -> Path:
    env_name = "".join(char if char.isalnum() or char in "-_." else "_" for char in config.env)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{env_name}__{config.algo}__s{config.seed}__{stamp}"


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory; refuse one that already holds files, so nothing written is overwritten."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file, not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise ConfigError(
            f"--run-dir {run_dir} already holds files; choose a new or empty directory "
            f"(or continue it with --resume {run_dir})"
        )
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)


def write_config(run_dir: Path, config: TrainConfig) -> None:
    text = json.dumps(to_json_dict(config), indent=2) + "\n"
    write_atomically(run_dir / "config.json", lambda file: file.write(text.encode()))


SLOW_FIT_SECONDS = 60.0  # a DirectLiNGAM fit estimated to be slower than this is announced at start


def check_causal_time_limit(config: TrainConfig, n_variables: int) -> None:
    """Refuse, before training, DirectLiNGAM fits estimated to exceed --causal-time-limit; announce slow ones."""
    if config.algo != "ace" or config.causal_method != "directlingam":
        return
    estimate = estimate_directlingam_seconds(config.causal_samples, n_variables)
    if config.causal_time_limit is not None and estimate > config.causal_time_limit:
        raise ConfigError(
            f"--causal-method directlingam on {n_variables} variables and {config.causal_samples} samples would "
            f"take about {estimate:.3g} s per fit, over --causal-time-limit {config.causal_time_limit:g}; "
            "use --causal-method sink (the same reward row, far faster) or raise the limit"
        )
    if config.causal_time_limit is None and estimate > SLOW_FIT_SECONDS:
        print(
            f"ace-rl: note: each DirectLiNGAM fit on {n_variables} variables will take about {estimate:.3g} s "
            f"(every {config.causal_interval} env steps); --causal-method sink gives the same reward row far faster",
            file=sys.stderr,
        )


class Trainer:
    """Everything one run needs, and the state that a checkpoint captures."""

    def __init__(self, config: TrainConfig, run_dir: Path, resume_state: dict[str, Any] | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.device = pick_device(config.device)
        self.env = make_env(config.env, reward=config.reward)
        self.eval_env = make_env(config.env, reward=config.reward)
        obs_dim = observation_size(self.env)
        action_dim = int(self.env.action_space.shape[0])
        if config.threads > 0:
            torch.set_num_threads(config.threads)

        seed_everything(config.seed)
        self.agent = ACE(
            obs_dim, action_dim, self.env.action_space.low, self.env.action_space.high, config, self.device,
            compile_losses=config.compile,
        )
        self.replay = ReplayBuffer(config.buffer_size, obs_dim, action_dim, config.seed)
        self.env_step = 0
        self.episode = 0
        self.best_return = -math.inf
        self.last_eval_return: float | None = None
        self.next_checkpoint = config.checkpoint_every
        self.elapsed_before = 0.0  # seconds trained by earlier processes of this run
        self.last_state_path: Path | None = None
        self.stop_signal: str | None = None

        if resume_state is None:
            self.obs = seed_env(self.env, config.seed)
            seed_env(self.eval_env, config.seed + EVAL_SEED_OFFSET)
        else:
            self.load_state_dict(resume_state)
            if resume_state["mid_episode"]:
                self.replay.end_episode()  # the interrupted episode ends here, as if truncated
            self.obs, _ = self.env.reset()  # checkpoints sit just before a reset: this continues the run
        self.logger = RunLogger(run_dir, action_dim, resume_after_step=self.env_step if resume_state else None)
        self.checkpoint_metadata = {"env": config.env, "reward": config.reward, "algo": config.algo, "seed": config.seed}

    # ----------------------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------------------
    def state_dict(self, mid_episode: bool) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "config": to_json_dict(self.config),
            "env_step": self.env_step,
            "episode": self.episode,
            "mid_episode": mid_episode,
            "best_return": self.best_return,
            "last_eval_return": self.last_eval_return,
            "next_checkpoint": self.next_checkpoint,
            "elapsed_seconds": self.elapsed(),
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict(),
            "rng": capture_global_rng(),
            "env_rng": capture_env_rng(self.env),
            "eval_env_rng": capture_env_rng(self.eval_env),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ConfigError(f"checkpoint format {state.get('format')} is not supported (expected {STATE_FORMAT})")
        self.env_step = int(state["env_step"])
        self.episode = int(state["episode"])
        self.best_return = float(state["best_return"])
        self.last_eval_return = state["last_eval_return"]
        self.next_checkpoint = int(state["next_checkpoint"])
        self.elapsed_before = float(state["elapsed_seconds"])
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        restore_global_rng(state["rng"])
        restore_env_rng(self.env, state["env_rng"])
        restore_env_rng(self.eval_env, state["eval_env_rng"])

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def save_state(self, mid_episode: bool) -> None:
        for name, param in [*self.agent.actor.named_parameters(), *self.agent.critic.named_parameters()]:
            if not torch.isfinite(param).all():
                raise NonFiniteError(
                    f"parameter {name} is not finite at env step {self.env_step}; not saving it. "
                    f"Last good checkpoint: {self.last_state_path or 'none'}"
                )
        self.last_state_path = save_training_state(self.run_dir, self.env_step, self.state_dict(mid_episode))

    # ----------------------------------------------------------------------------------------------
    # The loop
    # ----------------------------------------------------------------------------------------------
    def run(self) -> None:
        config = self.config
        self.started = time.perf_counter()
        first_step = self.env_step
        episode_return, episode_length = 0.0, 0
        pending_metrics: dict[str, torch.Tensor] = {}
        check_every_update = self.device.type == "cpu"  # reading a loss on a GPU would synchronise it
        progress = tqdm(
            total=config.total_steps, initial=self.env_step, unit="step", disable=not config.progress, mininterval=1.0
        )
        previous_handlers = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for env_step in range(self.env_step + 1, config.total_steps + 1):
                self.env_step = env_step
                if env_step <= config.start_steps:
                    action = self.env.action_space.sample()
                else:
                    action = self.agent.act(self.obs)
                next_obs, reward, terminated, truncated, _ = self.env.step(action)
                # Only a terminal state stops bootstrapping; a time limit (truncation) does not.
                self.replay.add(self.obs, action, float(reward), next_obs, terminated, truncated)
                episode_return += float(reward)
                episode_length += 1

                if (
                    config.algo == "ace"
                    and env_step % config.causal_interval == 0
                    and len(self.replay) >= config.causal_samples
                ):
                    self.fit_causal_model()

                if len(self.replay) >= config.batch_size:
                    for _ in range(config.updates_per_step):
                        metrics, reset = self.agent.update(self.replay.sample(config.batch_size, self.device))
                        pending_metrics.update(metrics)
                        if check_every_update:
                            self.check_finite(metrics)
                        if reset is not None:
                            self.logger.resets.write(
                                env_step=env_step, update=reset.update, dormancy_ratio=reset.dormancy_ratio,
                                reset_factor=reset.factor, kind=reset.kind,
                            )
                            self.logger.scalars(
                                {"reset/dormancy_ratio": reset.dormancy_ratio, "reset/factor": reset.factor}, env_step
                            )

                if env_step % config.log_every == 0 and pending_metrics:
                    if not check_every_update:
                        self.check_finite(pending_metrics)
                    self.logger.scalars({name: float(value) for name, value in pending_metrics.items()}, env_step)
                    seconds = time.perf_counter() - self.started
                    self.logger.scalars({"train/steps_per_second": (env_step - first_step) / seconds}, env_step)

                if env_step % config.eval_every == 0 or env_step == config.total_steps:
                    self.evaluate()
                    progress.set_postfix(eval_return=f"{self.last_eval_return:.1f}", refresh=False)

                episode_over = terminated or truncated
                if episode_over:
                    self.episode += 1
                    self.logger.episodes.write(
                        env_step=env_step, episode=self.episode, **{"return": episode_return}, length=episode_length,
                        terminated=int(terminated), wall_time=self.elapsed(),
                    )
                    self.logger.scalars({"train/episode_return": episode_return}, env_step)
                    episode_return, episode_length = 0.0, 0
                    if env_step >= self.next_checkpoint:
                        self.next_checkpoint = (env_step // config.checkpoint_every + 1) * config.checkpoint_every
                        self.save_state(mid_episode=False)
                progress.update(1)
                if self.stop_signal is not None:
                    self.save_state(mid_episode=not episode_over)
                    raise TrainingStopped(
                        f"stopped by {self.stop_signal} at env step {env_step}; checkpoint {self.last_state_path}; "
                        f"continue with: ace-rl train --resume {self.run_dir}"
                    )
                if episode_over:
                    self.obs, _ = self.env.reset()
                else:
                    self.obs = next_obs
            save_policy(
                self.run_dir / "checkpoints" / "final.pt", self.agent.actor,
                {**self.checkpoint_metadata, "env_step": self.env_step, "eval_return_mean": self.last_eval_return},
            )
            self.save_state(mid_episode=True)
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            progress.close()

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stop_signal = signal.Signals(signum).name

    def fit_causal_model(self) -> None:
        config = self.config
        try:
            fit = causal_weights(
                *self.replay.latest(config.causal_samples), method=config.causal_method,
                time_limit=config.causal_time_limit,
            )
        except CausalTimeLimitError as error:
            raise ConfigError(f"causal fit at env step {self.env_step}: {error}") from None
        self.agent.set_causal_weights(fit.weights)
        weights = {f"w{i}": float(w) for i, w in enumerate(fit.weights)}
        self.logger.causal.write(
            env_step=self.env_step, **weights, method=fit.method, seconds=fit.seconds,
            dropped_columns=len(fit.dropped), note=fit.note,
        )
        self.logger.scalars(
            {**{f"causal/{name}": value for name, value in weights.items()}, "causal/seconds": fit.seconds,
             "causal/dropped_columns": len(fit.dropped)},
            self.env_step,
        )

    def check_finite(self, metrics: dict[str, torch.Tensor]) -> None:
        for name, value in metrics.items():
            if not torch.isfinite(value).all():
                raise NonFiniteError(
                    f"{name} became {float(value)} at env step {self.env_step} (update {self.agent.updates}); "
                    f"training stopped. Last good checkpoint: {self.last_state_path or 'none yet'}"
                )

    def evaluate(self) -> None:
        config = self.config
        episodes = run_episodes(lambda obs: self.agent.act(obs, deterministic=True), self.eval_env, config.eval_episodes)
        mean_return, std_return = float(episodes.returns.mean()), float(episodes.returns.std())
        success_rate = episodes.success_rate
        self.last_eval_return = mean_return
        self.logger.metrics.write(
            env_step=self.env_step, updates=self.agent.updates, eval_return_mean=mean_return,
            eval_return_std=std_return, eval_success_rate="" if success_rate is None else success_rate,
            wall_time=self.elapsed(),
        )
        scalars = {"eval/return_mean": mean_return, "eval/return_std": std_return}
        if success_rate is not None:
            scalars["eval/success_rate"] = success_rate
        self.logger.scalars(scalars, self.env_step)
        if mean_return > self.best_return:
            self.best_return = mean_return
            save_policy(
                self.run_dir / "checkpoints" / "best.pt", self.agent.actor,
                {**self.checkpoint_metadata, "env_step": self.env_step, "eval_return_mean": mean_return},
            )

    def close(self) -> None:
        self.logger.close()
        self.env.close()
        self.eval_env.close()


def train(config: TrainConfig) -> Path:
    """Train as configured (or continue the run named by ``config.resume``) and return the run directory."""
    validate(config)
    if config.resume is not None:
        run_dir = config.resume
        state, path, skipped = load_training_state(run_dir)
        for problem in skipped:
            print(f"ace-rl: skipped checkpoint {problem}")
        if state["env_step"] >= config.total_steps:
            raise ConfigError(
                f"the run in {run_dir} already reached {state['env_step']} env steps; "
                "pass a larger --total-steps to continue it"
            )
        write_config(run_dir, config)
        trainer = Trainer(config, run_dir, resume_state=state)
        trainer.last_state_path = path
    else:
        run_dir = config.run_dir if config.run_dir is not None else default_run_dir(config)
        config.run_dir = run_dir
        # Unknown environments and impossible settings fail before anything is written.
        probe = make_env(config.env, reward=config.reward)
        check_causal_time_limit(config, observation_size(probe) + int(probe.action_space.shape[0]) + 1)
        probe.close()
        prepare_run_dir(run_dir)
        write_config(run_dir, config)
        trainer = Trainer(config, run_dir)
    try:
        trainer.run()
    finally:
        trainer.close()
    return run_dir
