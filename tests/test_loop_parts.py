"""The parts that hang off the training loop (ace_rl.loop_parts), each built and checked without a Trainer."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ace_rl.callbacks import TrainingContext
from ace_rl.checkpoint import PolicyFiles
from ace_rl.config import preset_config
from ace_rl.envs import make_env, seed_env
from ace_rl.logger import RunLogger
from ace_rl.loop_parts import BestPolicy, CheckpointSchedule, LossLog, NonFiniteError, PolicyEvaluator


def test_checkpoints_fall_at_the_first_episode_end_past_each_multiple():
    schedule = CheckpointSchedule(100)
    episode_ends = [40, 90, 130, 170, 230, 420, 450, 510]
    due = [step for step in episode_ends if schedule.due(step)]
    # past 100: 130; past 200: 230; past 300 and 400 (skipped over by one long episode): 420; past 500: 510.
    assert due == [130, 230, 420, 510]
    assert schedule.next == 600


class ConstantAgent:
    """Always the same action; its 'actor' is a module so that best.pt can hold it."""

    def __init__(self, action: float) -> None:
        self.action = np.array([action], dtype=np.float32)
        self.actor = nn.Linear(3, 1)
        self.updates = 7

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self.action

    def trained_parameters(self) -> list:
        return list(self.actor.named_parameters())


def pendulum_returns(action: float, episodes: int, seed: int) -> list[float]:
    env = make_env("Pendulum-v1")
    seed_env(env, seed)
    returns = []
    for _ in range(episodes):
        env.reset()
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(np.array([action], dtype=np.float32))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


class RecordingPolicyFiles(PolicyFiles):
    def __init__(self) -> None:
        super().__init__(Path("unused"), {})
        object.__setattr__(self, "written", [])

    def write(self, name: str, actor: nn.Module, env_step: int, eval_return: float | None) -> None:
        self.written.append((name, env_step, eval_return))


class FakeLoop:
    """The attributes of a Trainer that a TrainingContext reads."""

    def __init__(self, agent: ConstantAgent) -> None:
        self.agent = agent
        self.env_step = 0
        self.last_state_path = None


def test_evaluation_logs_the_mean_return_and_keeps_the_best_policy(tmp_path: Path):
    config = preset_config("small", env="Pendulum-v1", eval_every=10, eval_episodes=2, total_steps=25)
    env = make_env("Pendulum-v1")
    seed_env(env, 5)
    logger = RunLogger(tmp_path, 1)
    evaluator = PolicyEvaluator(config, env, logger)
    files = RecordingPolicyFiles()
    best = BestPolicy(files)
    agent = ConstantAgent(0.0)
    loop = FakeLoop(agent)
    context = TrainingContext(loop)  # type: ignore[arg-type]
    assert [step for step in range(1, 26) if evaluator.due(step)] == [10, 20, 25]
    expected = pendulum_returns(0.0, 4, seed=5)  # the same environment stream: two evaluations of two episodes
    for step in (10, 20):
        loop.env_step = step
        best.on_evaluation(context, evaluator.run(agent, step, wall_time=step / 10))
    logger.close()
    written = files.written
    with open(tmp_path / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [float(row["eval_return_mean"]) for row in rows] == pytest.approx(
        [np.mean(expected[:2]), np.mean(expected[2:])], rel=1e-5
    )
    best_step = 10 if np.mean(expected[:2]) >= np.mean(expected[2:]) else 20
    assert written[-1][:2] == ("best", best_step)
    assert best.best_policy is not None and best.best_policy["env_step"] == best_step
    assert evaluator.last_return == pytest.approx(np.mean(expected[2:]), rel=1e-5)


def test_loss_log_stops_on_a_non_finite_loss_and_names_the_last_good_checkpoint(tmp_path: Path):
    logger = RunLogger(tmp_path, 1)
    losses = LossLog(preset_config("small", log_every=5), logger, torch.device("cpu"))
    losses.add({"loss/critic": torch.tensor(1.5)}, env_step=3, updates=2, last_good="state-00000100.pt")
    assert not losses.due(4) and losses.due(5)
    with pytest.raises(NonFiniteError, match=r"loss/actor became nan at env step 6 \(update 3\).*state-00000100.pt"):
        losses.add({"loss/actor": torch.tensor(float("nan"))}, env_step=6, updates=3, last_good="state-00000100.pt")
    logger.close()
