"""Callbacks that the tests name on the command line (``--callback callback_helpers:NAME``, tests/ on PYTHONPATH).

Importing this module appends a line to the file named by CALLBACK_HELPERS_IMPORTED, where that is set, so that a
test can tell whether a command imported it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch

from ace_rl.callbacks import Callback, EarlyStopping, FinishedEpisode, TrainingContext
from ace_rl.evaluation import Evaluation

if os.environ.get("CALLBACK_HELPERS_IMPORTED"):
    with open(os.environ["CALLBACK_HELPERS_IMPORTED"], "a") as marker:
        marker.write(f"imported by {os.getpid()}\n")

STOP_AT = 200


class StopAtStep(Callback):
    """Asks to stop at env step STOP_AT."""

    def on_step(self, context: TrainingContext) -> None:
        if context.env_step == STOP_AT:
            context.request_stop(f"env step {STOP_AT} reached")


def stop_at_step() -> Callback:
    """A factory, as --callback accepts."""
    return StopAtStep()


def flat_patience() -> Callback:
    """Stops at the third evaluation whatever its returns: no improvement can exceed a min_delta of 1e9."""
    return EarlyStopping(patience=2, min_delta=1e9)


class Counter(Callback):
    """Counts what the loop calls it with; its counts are its state, and at the end of training it writes them to
    RUN/counter.json and logs one scalar."""

    key = "counter"

    def __init__(self) -> None:
        self.counts = {"steps": 0, "updates": 0, "episodes": 0, "evaluations": 0, "checkpoints": 0}
        self.returns_sum = 0.0

    def on_step(self, context: TrainingContext) -> None:
        self.counts["steps"] += 1

    def on_update(self, context: TrainingContext, losses: Mapping[str, torch.Tensor]) -> None:
        self.counts["updates"] += 1

    def on_episode_end(self, context: TrainingContext, episode: FinishedEpisode) -> None:
        self.counts["episodes"] += 1
        self.returns_sum += episode.episode_return

    def on_evaluation(self, context: TrainingContext, evaluation: Evaluation) -> None:
        self.counts["evaluations"] += 1
        context.logger.scalars({"counter/evaluations": self.counts["evaluations"]}, context.env_step)

    def on_checkpoint(self, context: TrainingContext, path: os.PathLike) -> None:
        self.counts["checkpoints"] += 1

    def on_training_end(self, context: TrainingContext) -> None:
        record = {**self.counts, "returns_sum": self.returns_sum, "env_step": context.env_step}
        (context.run_dir / "counter.json").write_text(json.dumps(record))

    def state_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "returns_sum": self.returns_sum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = dict(state["counts"])
        self.returns_sum = float(state["returns_sum"])


NOT_A_CALLBACK = 3


def returns_a_number() -> int:
    return 3


def fails() -> Callback:
    raise RuntimeError("the factory broke")
