"""TD3: its target and losses against hand computation, its cadence, exploration, the real command, resume."""

from __future__ import annotations

import copy
import csv
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ace_rl.config import ConfigError, preset_config, validate
from ace_rl.replay import Batch
from ace_rl.td3 import TD3, clipped_double_q_target, smoothed_target_actions

LOW = np.array([-1.0, -2.0], np.float32)
HIGH = np.array([1.0, 4.0], np.float32)  # half-ranges 1 and 3: noise scales must follow them


def make_agent(**settings) -> TD3:
    torch.manual_seed(0)
    config = preset_config("small", algo="td3", hidden_size=16, batch_size=8, **settings)
    return TD3(3, 2, LOW, HIGH, config, torch.device("cpu"))


def make_batch(seed: int = 1) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    actions = torch.rand(8, 2, generator=generator) * torch.tensor(HIGH - LOW) + torch.tensor(LOW)
    return Batch(
        torch.randn(8, 3, generator=generator),
        actions,
        torch.randn(8, generator=generator),
        torch.randn(8, 3, generator=generator),
        (torch.rand(8, generator=generator) < 0.3).float(),
    )


def test_smoothing_and_target_by_hand():
    target_actions = torch.tensor([[0.9, 3.5], [-0.2, 0.0]])
    noise = torch.tensor([[0.4, -2.0], [-0.1, 0.6]])
    clip = torch.tensor([0.5, 1.5])
    low, high = torch.tensor(LOW), torch.tensor(HIGH)
    smoothed = smoothed_target_actions(target_actions, noise, clip, low, high)
    # 0.9 + 0.4 = 1.3 -> 1.0 (bound); 3.5 + clip(-2.0, -1.5, 1.5) = 2.0; -0.2 - 0.1 = -0.3; 0.0 + 0.6 = 0.6
    torch.testing.assert_close(smoothed, torch.tensor([[1.0, 2.0], [-0.3, 0.6]]))
    next_q = torch.tensor([[1.0, 5.0], [2.0, 4.0]])
    target = clipped_double_q_target(torch.tensor([0.5, -1.0]), torch.tensor([0.0, 1.0]), next_q, 0.9)
    torch.testing.assert_close(target, torch.tensor([0.5 + 0.9 * 1.0, -1.0]))


def test_critic_loss_and_update_cadence_by_hand():
    agent = make_agent(policy_frequency=2, tau=0.1)
    batch = make_batch()
    half_range = torch.tensor((HIGH - LOW) / 2)

    # The expected critic loss, written out: target policy smoothing with the same noise draw.
    rng = torch.get_rng_state()
    noise = torch.randn(8, 2) * 0.2 * half_range
    with torch.no_grad():
        next_actions = agent.actor_target(batch.next_obs) + noise.clamp(-0.5 * half_range, 0.5 * half_range)
        next_actions = torch.max(torch.min(next_actions, torch.tensor(HIGH)), torch.tensor(LOW))
        q1_next, q2_next = agent.critic_target(batch.next_obs, next_actions)
        y = batch.rewards + agent.config.gamma * (1 - batch.terminated) * torch.min(q1_next, q2_next)
        q1, q2 = agent.critic(batch.obs, batch.actions)
        expected_loss = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
    torch.set_rng_state(rng)

    actor_before = copy.deepcopy(agent.actor.state_dict())
    critic_target_before = copy.deepcopy(agent.critic_target.state_dict())
    metrics = agent.update(batch)
    torch.testing.assert_close(metrics["loss/critic"], expected_loss)
    assert "loss/actor" not in metrics
    for name, value in agent.actor.state_dict().items():  # update 1: the actor waits
        torch.testing.assert_close(value, actor_before[name])

    # Update 2: the actor's gradient is that of -mean Q1(s, pi(s)), then both targets move by tau.
    probe = copy.deepcopy(agent)
    rng = torch.get_rng_state()
    metrics = agent.update(batch)
    torch.set_rng_state(rng)
    probe.critic_optimizer.zero_grad()
    probe_loss = probe.critic_loss(batch)[0]  # keep the random stream aligned with the agent's update
    probe_loss.backward()
    probe.critic_optimizer.step()
    expected_actor_loss = -probe.critic(batch.obs, probe.actor(batch.obs))[0].mean()
    torch.testing.assert_close(metrics["loss/actor"], expected_actor_loss.detach())
    for name, target in agent.critic_target.state_dict().items():
        online = agent.critic.state_dict()[name]
        # Two Polyak steps did not happen: only update 2 moves the target, once.
        torch.testing.assert_close(target, critic_target_before[name] + 0.1 * (online - critic_target_before[name]))
    for name, target in agent.actor_target.state_dict().items():
        if name.startswith("action_"):
            continue
        online = agent.actor.state_dict()[name]
        torch.testing.assert_close(target, actor_before[name] + 0.1 * (online - actor_before[name]))


def test_exploration_noise_follows_the_action_scale():
    agent = make_agent()
    obs = np.zeros(3, np.float32)
    deterministic = agent.act(obs, deterministic=True)
    torch.manual_seed(3)
    actions = np.stack([agent.act(obs) for _ in range(4000)])
    assert np.all(actions >= LOW) and np.all(actions <= HIGH)
    noise = actions - deterministic
    inside = np.all((actions > LOW + 0.5) & (actions < HIGH - 0.5), axis=0)
    half_range = (HIGH - LOW) / 2
    np.testing.assert_allclose(noise.std(axis=0)[inside], (0.1 * half_range)[inside], rtol=0.06)
    np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=0.02 * half_range.max())


def test_td3_refuses_resets():
    with pytest.raises(ConfigError, match="--algo td3 runs without resets"):
        validate(preset_config("small", algo="td3", reset="reset"))
    assert preset_config("small", algo="td3").reset == "none"


# --------------------------------------------------------------------------------------------------
# The real command
# --------------------------------------------------------------------------------------------------
TINY = [
    "--env",
    "Hopper-v5",
    "--algo",
    "td3",
    "--seed",
    "2",
    "--preset",
    "small",
    "--total-steps",
    "900",
    "--start-steps",
    "200",
    "--batch-size",
    "32",
    "--hidden-size",
    "32",
    "--eval-every",
    "300",
    "--eval-episodes",
    "2",
    "--checkpoint-every",
    "150",
    "--threads",
    "1",
    "--no-progress",
]


def ace_rl(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ace_rl.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def table(path: Path, drop: tuple[str, ...] = ("wall_time",)) -> list[dict]:
    with open(path, newline="") as file:
        return [{key: value for key, value in row.items() if key not in drop} for row in csv.DictReader(file)]


@pytest.fixture(scope="module")
def td3_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("td3") / "reference"
    process = ace_rl("train", *TINY, "--run-dir", str(run_dir))
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return run_dir


def test_td3_command_writes_an_ordinary_run(td3_run: Path):
    import json

    config = json.loads((td3_run / "config.json").read_text())
    assert (config["algo"], config["reset"], config["policy_noise"], config["noise_clip"]) == ("td3", "none", 0.2, 0.5)
    assert [int(row["env_step"]) for row in table(td3_run / "metrics.csv")] == [300, 600, 900]
    assert table(td3_run / "resets.csv") == [] and table(td3_run / "causal_weights.csv") == []
    # Like the reference TD3, no update during the 200 random start steps: the first comes with the policy's first step.
    assert config["warmup_updates"] is False
    assert [int(row["updates"]) for row in table(td3_run / "metrics.csv")] == [300 - 200, 600 - 200, 900 - 200]
    process = ace_rl("eval", str(td3_run), "--checkpoint", "final", "--episodes", "2")
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert stdout.startswith("Hopper-v5 final: return")


def test_td3_warmup_updates_flag_updates_from_the_first_full_batch(tmp_path: Path):
    run_dir = tmp_path / "warmup"
    overrides = {"--total-steps": "300", "--eval-every": "300", "--checkpoint-every": "300"}
    settings = [overrides.get(previous, value) for previous, value in zip(["", *TINY], TINY)]
    process = ace_rl("train", *settings, "--warmup-updates", "--run-dir", str(run_dir))
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert json.loads((run_dir / "config.json").read_text())["warmup_updates"] is True
    # As ace and sac (the official ACE code): update 1 at env step 32, the first with a batch of 32 stored.
    assert [int(row["updates"]) for row in table(run_dir / "metrics.csv")] == [300 - 32 + 1]


def test_td3_sigkill_then_resume_matches_the_uninterrupted_run(td3_run: Path, tmp_path: Path):
    run_dir = tmp_path / "killed"
    process = ace_rl("train", *TINY, "--run-dir", str(run_dir))
    deadline = time.time() + 300
    while not list((run_dir / "checkpoints").glob("state-*.pt.sha256")) if (run_dir / "checkpoints").exists() else True:
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.5))
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = ace_rl("train", "--resume", str(run_dir), "--no-progress")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    for name in ("metrics.csv", "episodes.csv"):
        assert table(run_dir / name) == table(td3_run / name), name
