"""The training loop's one extension point: callbacks, in the spirit of Stable-Baselines3's ``BaseCallback``.

The loop (ace_rl.trainer) does what changes the run: it steps the environment, updates the agent, evaluates and
writes full-state checkpoints. Everything that reacts to those events is a `Callback`: the loop's own parts
(ace_rl.loop_parts: the causal fits, the losses, the resets, best.pt, episodes.csv, the training videos) and the
user's (``ace_rl.train(config, callbacks=[...])``, ``ace-rl train --callback module:name``). One step calls, in
order of the list (the loop's own parts first, then the user's):

    on_transition     after the environment step's transition is stored, before this step's updates
    on_update         after each agent update, with its losses (tensors: reading one on a GPU synchronises it)
    on_step           after this step's updates
    on_evaluation     after an evaluation (every --eval-every env steps and at the last one)
    on_episode_end    after an episode ended (before the environment is reset)
    on_checkpoint     after a full-state checkpoint was written

and ``on_training_start`` / ``on_training_end`` around the whole run (each process of it: a resumed run starts
again). A callback reads the run through its `TrainingContext`, and stops the run with
``context.request_stop(reason)``: the run ends at the end of that step as at its total (final.pt, the last
checkpoint) and counts as done (ace_rl.runstate).

A callback's `state_dict` is saved in every full-state checkpoint, keyed by its `callback_key`, and given back
to its `load_state_dict` when the run resumes, so that a resumed run continues exactly. A checkpoint is not itself
a callback: it captures every callback's state.

Files are data: nothing in a run directory names a callback to import. On resume, the callbacks are those given
again; a callback whose state the checkpoint holds but that is not given is left out with a one-line note.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ace_rl.errors import AceRlError
from ace_rl.evaluation import Evaluation
from ace_rl.trust import is_standard_library
from ace_rl.user_code import describe_error

if TYPE_CHECKING:
    import torch

    from ace_rl.agents import Agent
    from ace_rl.config import TrainConfig
    from ace_rl.logger import RunLogger
    from ace_rl.replay import ReplayBuffer


class CallbackError(AceRlError, ValueError):
    """A callback named on the command line cannot be used, or a callback's state cannot be restored."""


@dataclass(frozen=True)
class FinishedEpisode:
    """A training episode that has just ended."""

    number: int
    """Its number in the run, from 1."""
    episode_return: float
    length: int
    terminated: bool
    """Ended by the task (a terminal state), not by a time limit."""


class LoopView(Protocol):
    """What of the training loop a `TrainingContext` reads (ace_rl.trainer.Trainer provides it)."""

    @property
    def config(self) -> TrainConfig: ...
    @property
    def run_dir(self) -> Path: ...
    @property
    def env_step(self) -> int: ...
    @property
    def episode(self) -> int: ...
    @property
    def agent(self) -> Agent: ...
    @property
    def replay(self) -> ReplayBuffer: ...
    @property
    def logger(self) -> RunLogger: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def last_evaluation(self) -> Evaluation | None: ...
    @property
    def last_state_path(self) -> Path | None: ...
    def elapsed(self) -> float: ...


@dataclass(frozen=True)
class StopRequest:
    callback: str
    """The `callback_key` of the callback that asked."""
    reason: str


class TrainingContext:
    """What a callback may read of a run, and the one thing it may ask of it: `request_stop`.

    The loop's objects are the live ones (``agent``, ``replay``, ``logger``): a callback may read them and log its
    own scalars (``context.logger.scalars({"my/value": x}, context.env_step)``), but a callback that changes them
    changes the run."""

    def __init__(self, loop: LoopView) -> None:
        self._loop = loop
        self._stop: StopRequest | None = None
        self._caller = ""

    @property
    def config(self) -> TrainConfig:
        return self._loop.config

    @property
    def run_dir(self) -> Path:
        return self._loop.run_dir

    @property
    def env_step(self) -> int:
        """Env steps taken so far, this one included."""
        return self._loop.env_step

    @property
    def episode(self) -> int:
        """Episodes finished so far."""
        return self._loop.episode

    @property
    def updates(self) -> int:
        """Agent updates so far."""
        return self._loop.agent.updates

    @property
    def agent(self) -> Agent:
        return self._loop.agent

    @property
    def replay(self) -> ReplayBuffer:
        return self._loop.replay

    @property
    def logger(self) -> RunLogger:
        """The run's CSV tables, TensorBoard and W&B; ``logger.scalars(values, env_step)`` adds scalars."""
        return self._loop.logger

    @property
    def device(self) -> torch.device:
        return self._loop.device

    @property
    def elapsed_seconds(self) -> float:
        """Seconds trained, by this process and the earlier ones of the run."""
        return self._loop.elapsed()

    @property
    def last_evaluation(self) -> Evaluation | None:
        return self._loop.last_evaluation

    @property
    def last_checkpoint(self) -> Path | None:
        """The latest full-state checkpoint written or resumed from; None before the first."""
        return self._loop.last_state_path

    @property
    def stop_request(self) -> StopRequest | None:
        return self._stop

    def request_stop(self, reason: str) -> None:
        """End the run at the end of this step, as at its total: final.pt and a last checkpoint are written, and the
        run is done. ``reason`` is printed in one line. The first request counts."""
        if self._stop is None:
            self._stop = StopRequest(self._caller, reason)

    def calling(self, key: str) -> None:
        """Set by the loop before it calls a callback's hook: who a stop request comes from."""
        self._caller = key


class Callback:
    """The base of a callback: every hook does nothing until overridden, and there is no state to save.

    Override the hooks you need, and `state_dict` / `load_state_dict` when the callback keeps state that a resumed
    run must continue from (plain values and tensors: checkpoints load with weights_only=True). ``key``, where a
    subclass sets it, names the callback's state in checkpoints (default: module and class name)."""

    key: str | None = None

    def on_training_start(self, context: TrainingContext) -> None:
        """Once a process starts (or resumes) the run, before its first step."""

    def on_transition(self, context: TrainingContext) -> None:
        """After the env step's transition is stored in the replay, before this step's updates."""

    def on_update(self, context: TrainingContext, losses: Mapping[str, torch.Tensor]) -> None:
        """After each agent update, with the losses it returned."""

    def on_step(self, context: TrainingContext) -> None:
        """After the env step and its updates."""

    def on_evaluation(self, context: TrainingContext, evaluation: Evaluation) -> None:
        """After the deterministic evaluation episodes of this env step (metrics.csv has their row)."""

    def on_episode_end(self, context: TrainingContext, episode: FinishedEpisode) -> None:
        """After a training episode ended (before the environment is reset)."""

    def on_checkpoint(self, context: TrainingContext, path: Path) -> None:
        """After the full-state checkpoint ``path`` was written (it holds this callback's `state_dict` from before this
        call). A run resumed from ``path`` calls it again, after ``on_training_start``, so that the callback's state
        continues exactly; an effect outside that state (a file written, an upload) may then happen twice."""

    def on_training_end(self, context: TrainingContext) -> None:
        """After the run reached its total or was stopped by a callback (final.pt and the last checkpoint
        written); not after a stop by a signal or an error."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``, a `state_dict` of an earlier process of the run."""


def callback_keys(callbacks: list[Callback]) -> list[str]:
    """The keys under which the callbacks' states are saved: ``key`` or ``module.Class``; a second callback of the
    same key gets ``#2``, a third ``#3``."""
    keys: list[str] = []
    for callback in callbacks:
        kind = type(callback)
        base = callback.key or f"{kind.__module__}.{kind.__qualname__}"
        count = sum(1 for key in keys if key == base or key.startswith(base + "#"))
        keys.append(base if count == 0 else f"{base}#{count + 1}")
    return keys


# --------------------------------------------------------------------------------------------------------------
# The example that ships: early stopping
# --------------------------------------------------------------------------------------------------------------
class EarlyStopping(Callback):
    """Stop the run when an evaluation reaches ``threshold``, or when ``patience`` evaluations in a row have not
    improved on the best one by more than ``min_delta``.

    ``metric``: ``"return"`` (the mean evaluation return) or ``"success_rate"`` (for tasks that report success;
    an evaluation without one counts as no improvement). Either criterion may be None (off). Its state (the best
    value, the evaluations since it) is saved in checkpoints, so a resumed run counts on exactly.
    """

    def __init__(
        self,
        threshold: float | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        metric: Literal["return", "success_rate"] = "return",
    ) -> None:
        if threshold is None and patience is None:
            raise ValueError("EarlyStopping needs a threshold, a patience or both")
        if patience is not None and patience < 1:
            raise ValueError(f"EarlyStopping patience must be at least 1, got {patience}")
        if metric not in ("return", "success_rate"):
            raise ValueError(f"EarlyStopping metric must be 'return' or 'success_rate', got {metric!r}")
        self.threshold = threshold
        self.patience = patience
        self.min_delta = min_delta
        self.metric = metric
        self.best = -math.inf
        self.evaluations_without_improvement = 0

    def decide(self, value: float | None) -> str | None:
        """Count one evaluation of ``value``; the reason to stop, or None to go on."""
        if value is not None and value > self.best + self.min_delta:
            self.best = value
            self.evaluations_without_improvement = 0
        else:
            self.evaluations_without_improvement += 1
        if self.threshold is not None and value is not None and value >= self.threshold:
            return f"evaluation {self.metric} {value:.6g} reached the threshold {self.threshold:g}"
        if self.patience is not None and self.evaluations_without_improvement >= self.patience:
            return f"evaluation {self.metric} has not improved on {self.best:.6g} for {self.patience} evaluations"
        return None

    def on_evaluation(self, context: TrainingContext, evaluation: Evaluation) -> None:
        value = evaluation.mean if self.metric == "return" else evaluation.success_rate
        reason = self.decide(value)
        if reason is not None:
            context.request_stop(reason)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "evaluations_without_improvement": self.evaluations_without_improvement}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.evaluations_without_improvement = int(state["evaluations_without_improvement"])


# --------------------------------------------------------------------------------------------------------------
# Callbacks named on the command line
# --------------------------------------------------------------------------------------------------------------
ACCEPTED = (
    "--callback takes module:name, where the module is importable (installed or on PYTHONPATH) and name is a "
    "Callback subclass or a function that returns a Callback, either called with no arguments"
)


def load_callback(spec: str) -> Callback:
    """The callback that ``--callback module:name`` names: the module imported (only because the user named it),
    then its ``name`` called with no arguments. One CallbackError line for anything wrong."""
    module_name, separator, name = spec.rpartition(":")
    if not separator or not module_name or not name:
        raise CallbackError(f"--callback {spec!r} has no module:name form; {ACCEPTED}")
    if is_standard_library(module_name):
        raise CallbackError(f"--callback {spec!r}: {module_name!r} is a standard-library module; {ACCEPTED}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise CallbackError(f"--callback {spec!r}: no module named {module_name!r}; {ACCEPTED}") from None
        raise CallbackError(
            f"--callback {spec!r}: importing {module_name!r} failed ({describe_error(error)})"
        ) from error
    except Exception as error:
        raise CallbackError(
            f"--callback {spec!r}: importing {module_name!r} failed ({describe_error(error)})"
        ) from error
    if not hasattr(module, name):
        raise CallbackError(f"--callback {spec!r}: module {module_name!r} has no attribute {name!r}; {ACCEPTED}")
    target = getattr(module, name)
    if isinstance(target, Callback):
        raise CallbackError(f"--callback {spec!r} is a Callback instance; {ACCEPTED}")
    if not callable(target):
        raise CallbackError(f"--callback {spec!r} is a {type(target).__name__}, not callable; {ACCEPTED}")
    try:
        callback = target()
    except Exception as error:
        raise CallbackError(f"--callback {spec!r}: calling {name}() failed ({describe_error(error)})") from error
    if not isinstance(callback, Callback):
        raise CallbackError(
            f"--callback {spec!r}: {name}() returned a {type(callback).__name__}, not an ace_rl.callbacks.Callback; "
            f"{ACCEPTED}"
        )
    return callback


def check_callbacks(callbacks: object) -> list[Callback]:
    """``callbacks`` as given to ace_rl.train / resume, checked: a list (or tuple) of Callback instances."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise CallbackError(f"callbacks must be a list of ace_rl.callbacks.Callback, got a {type(callbacks).__name__}")
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise CallbackError(
                f"callbacks must be ace_rl.callbacks.Callback instances, got a {type(callback).__name__}"
            )
    return list(callbacks)


__all__ = [
    "Callback",
    "CallbackError",
    "EarlyStopping",
    "FinishedEpisode",
    "StopRequest",
    "TrainingContext",
    "callback_keys",
    "check_callbacks",
    "load_callback",
]
