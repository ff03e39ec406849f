"""The fast update (fused Adam, optionally compiled losses) computes what the plain update computes."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from ace_rl.ace import ACE
from ace_rl.cli import parse_train
from ace_rl.config import ConfigError, preset_config, to_json_dict
from ace_rl.networks import Actor
from ace_rl.replay import Batch

OBS_DIM, ACTION_DIM, BATCH = 7, 3, 32


def make_agent(**fast_path: bool) -> ACE:
    torch.manual_seed(0)
    config = preset_config("small", hidden_size=64, batch_size=BATCH, reset="none")
    agent = ACE(
        OBS_DIM, ACTION_DIM, -np.ones(ACTION_DIM), np.ones(ACTION_DIM), config, torch.device("cpu"), **fast_path
    )
    agent.set_causal_weights(np.array([1.8, 0.9, 0.3]))
    return agent


def batches(count: int) -> list[Batch]:
    generator = torch.Generator().manual_seed(5)
    return [
        Batch(
            obs=torch.randn(BATCH, OBS_DIM, generator=generator),
            actions=torch.rand(BATCH, ACTION_DIM, generator=generator) * 2 - 1,
            rewards=torch.randn(BATCH, generator=generator),
            next_obs=torch.randn(BATCH, OBS_DIM, generator=generator),
            terminated=(torch.rand(BATCH, generator=generator) < 0.2).float(),
        )
        for _ in range(count)
    ]


def run_updates(agent: ACE, data: list[Batch]) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(99)  # the policy's sampling noise
    metrics = [agent.update(batch) for batch in data]
    metrics.append({"next random numbers": torch.rand(3)})  # both paths must consume the generator alike
    return metrics


def assert_same_training(fast: ACE, plain: ACE, fast_metrics: list[dict], plain_metrics: list[dict]) -> None:
    for fast_step, plain_step in zip(fast_metrics, plain_metrics):
        assert fast_step.keys() == plain_step.keys()
        for name in plain_step:
            torch.testing.assert_close(fast_step[name], plain_step[name], rtol=1e-4, atol=1e-5, msg=name)
    for name, module in (("actor", "actor"), ("critic", "critic"), ("target", "critic_target")):
        fast_params = dict(getattr(fast, module).named_parameters())
        for param_name, plain_param in getattr(plain, module).named_parameters():
            torch.testing.assert_close(
                fast_params[param_name], plain_param, rtol=1e-4, atol=1e-5, msg=f"{name}.{param_name}"
            )
    torch.testing.assert_close(fast.log_alpha, plain.log_alpha, rtol=1e-4, atol=1e-6)


def test_fused_adam_update_matches_the_plain_update():
    data = batches(6)  # three actor updates, optimizer moments built up over several steps
    plain, fast = make_agent(fused_adam=False), make_agent()
    assert not plain.critic_optimizer.defaults["fused"] and fast.critic_optimizer.defaults["fused"]
    plain_metrics, fast_metrics = run_updates(plain, data), run_updates(fast, data)
    assert_same_training(fast, plain, fast_metrics, plain_metrics)
    # The updates did change the networks, so agreeing is not agreeing on the initial weights.
    assert not torch.allclose(plain.actor.mean.weight, make_agent().actor.mean.weight)


def test_compiled_update_matches_the_plain_update():
    data = batches(4)
    torch._dynamo.reset()
    counters.clear()
    plain, fast = make_agent(fused_adam=False), make_agent(compile_losses=True)
    plain_metrics, fast_metrics = run_updates(plain, data), run_updates(fast, data)
    assert_same_training(fast, plain, fast_metrics, plain_metrics)
    # The fast agent's updates ran compiled code (an uncompiled one would match trivially): TorchDynamo captured
    # the frames of both losses whole, and AOTAutograd compiled their backward passes.
    assert counters["frames"]["ok"] >= 2 and counters["aot_autograd"]["ok"] >= 2, dict(counters)
    assert not counters["graph_break"], dict(counters["graph_break"])


def test_sample_action_draws_the_action_sample_draws():
    torch.manual_seed(0)
    actor = Actor(OBS_DIM, ACTION_DIM, 16, -torch.ones(ACTION_DIM), 2 * torch.ones(ACTION_DIM))
    obs = torch.randn(4, OBS_DIM)
    torch.manual_seed(7)
    sampled, _ = actor.sample(obs, torch.ones(ACTION_DIM))
    after_sample = torch.rand(1)
    torch.manual_seed(7)
    torch.testing.assert_close(actor.sample_action(obs), sampled)
    assert torch.equal(torch.rand(1), after_sample)  # the same random numbers were consumed


def test_compile_is_off_unless_asked_and_may_change_on_resume(tmp_path: Path):
    assert not preset_config("paper").compile and not preset_config("small").compile
    assert parse_train(["--env", "Pendulum-v1", "--preset", "small"]).compile is False
    assert parse_train(["--env", "Pendulum-v1", "--preset", "small", "--compile"]).compile is True
    stored = preset_config("small", env="Pendulum-v1", hidden_size=32)
    (tmp_path / "config.json").write_text(json.dumps(to_json_dict(stored)))
    resumed = parse_train(["--resume", str(tmp_path), "--compile"])
    assert resumed.compile is True
    assert dataclasses.replace(resumed, compile=False, resume=None) == stored
    # whereas a setting of the experiment may not change on resume
    with pytest.raises(ConfigError, match="--hidden-size 64 contradicts the resumed run's hidden_size = 32"):
        parse_train(["--resume", str(tmp_path), "--hidden-size", "64"])
