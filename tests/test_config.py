import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ace_rl.ace import ACE
from ace_rl.cli import parse_train
from ace_rl.config import ConfigError, preset_config, validate

# design.md section 3, "Defaults (from the official code; the paper preset)", row by row as it states them: the
# design is the source here, not the preset's own constants.
DESIGN_SCHEDULE = {
    "batch size: 512": {"batch_size": 512},
    "gamma / tau: 0.99 / 0.005": {"gamma": 0.99, "tau": 0.005},
    "actor, temperature and target-network updates: every 2nd critic update": {"policy_frequency": 2},
    "updates per environment step: 1": {"updates_per_step": 1},
    "random start steps: 10,000": {"start_steps": 10_000},
    "replay buffer: 1,000,000": {"buffer_size": 1_000_000},
    "causal interval / sample size: 10,000 env steps / the latest 10,000 transitions": {
        "causal_interval": 10_000,
        "causal_samples": 10_000,
    },
    "reset interval: 100,000 updates, first after 5,000 updates": {"reset_interval": 100_000, "reset_start": 5_000},
    "total steps: 1,000,000": {"total_steps": 1_000_000},
    "evaluation: 10 deterministic episodes": {"eval_episodes": 10},
}
DESIGN_WIDTH = 1024  # "hidden layers: 3 x 1024 for the policy and for each of the two Q networks"
DESIGN_LAYERS = 3
DESIGN_LEARNING_RATE = 3e-4  # "learning rates: 3e-4 (Adam) for policy, critic and temperature"


@pytest.mark.parametrize("row", DESIGN_SCHEDULE)
def test_the_paper_preset_is_the_designs_schedule(row: str):
    config = parse_train([])  # the command's default is the paper preset
    assert {name: getattr(config, name) for name in DESIGN_SCHEDULE[row]} == DESIGN_SCHEDULE[row]


def test_the_paper_preset_builds_the_designs_agent():
    """What ACE builds from the paper preset, against the design's table: 3 x 1024 hidden layers for the policy and
    each of two Q networks, ELU then ReLU, Xavier-uniform weights and zero biases, Adam at 3e-4 for policy, critic and
    temperature, log alpha starting at 0, target entropy -|A|."""
    obs_dim, action_dim = 5, 3
    agent = ACE(obs_dim, action_dim, -np.ones(action_dim), np.ones(action_dim), parse_train([]), torch.device("cpu"))
    assert [tuple(layer.weight.shape) for layer in agent.actor.hidden] == [
        (DESIGN_WIDTH, obs_dim),
        *[(DESIGN_WIDTH, DESIGN_WIDTH)] * (DESIGN_LAYERS - 1),
    ]
    assert [tuple(layer.weight.shape) for layer in agent.critic.linear_layers()] == [
        (2, obs_dim + action_dim, DESIGN_WIDTH),
        *[(2, DESIGN_WIDTH, DESIGN_WIDTH)] * (DESIGN_LAYERS - 1),
        (2, DESIGN_WIDTH, 1),
    ]
    for layer in [*agent.actor.linear_layers(), *agent.critic.linear_layers()]:
        fan_in, fan_out = layer.weight.shape[-2:] if layer.weight.dim() == 3 else layer.weight.shape[::-1]
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # Xavier-uniform: U(-bound, bound)
        assert float(layer.weight.detach().abs().max()) <= bound and torch.count_nonzero(layer.bias) == 0
    # ELU after the first hidden layer, ReLU after the next two, written out on the actor's own weights
    obs = torch.randn(4, obs_dim)
    first, *rest = agent.actor.hidden
    features = F.elu(F.linear(obs, first.weight, first.bias))
    for layer in rest:
        features = F.relu(F.linear(features, layer.weight, layer.bias))
    mean, _ = agent.actor(obs)
    torch.testing.assert_close(mean, F.linear(features, agent.actor.mean.weight, agent.actor.mean.bias))
    for optimizer in (agent.actor_optimizer, agent.critic_optimizer, agent.alpha_optimizer):
        assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["lr"] == DESIGN_LEARNING_RATE
    assert agent.log_alpha.item() == 0.0 and agent.target_entropy == -action_dim


def test_small_preset_sees_causal_fits_and_a_reset_within_50000_steps():
    config = preset_config("small")
    assert (config.hidden_size, config.batch_size) == (256, 256)
    updates_in_50k = 50_000 - config.batch_size
    assert 50_000 // config.causal_interval >= 2
    assert updates_in_50k >= config.reset_interval > config.reset_start


def test_sac_has_no_reset_and_explicit_settings_win():
    assert preset_config("small", "sac").reset == "none"
    assert preset_config("small", batch_size=64).batch_size == 64


def test_each_agent_updates_its_actor_on_its_references_schedule():
    # ACE's official code and TD3 (Fujimoto et al. 2018) update the actor on every 2nd critic update; the reference
    # SAC (Haarnoja et al. 2018, Algorithm 1) and Stable-Baselines3's SAC on every one.
    assert {algo: preset_config("small", algo).policy_frequency for algo in ("ace", "sac", "td3")} == {
        "ace": 2,
        "sac": 1,
        "td3": 2,
    }
    assert parse_train(["--algo", "sac"]).policy_frequency == 1
    assert parse_train(["--algo", "sac", "--policy-frequency", "2"]).policy_frequency == 2
    assert parse_train(["--policy-frequency", "1"]).policy_frequency == 1


def test_command_line_preset_fills_defaults_and_flags_override():
    config = parse_train(["--preset", "small", "--batch-size", "32", "--algo", "sac"])
    assert (config.preset, config.hidden_size, config.batch_size, config.reset) == ("small", 256, 32, "none")
    assert parse_train(["--preset=small"]).hidden_size == 256
    assert parse_train([]).hidden_size == 1024


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(batch_size=0), "--batch-size must be a positive integer, got 0"),
        (dict(causal_interval=-5), "--causal-interval must be a positive integer, got -5"),
        (dict(start_steps=-1), "--start-steps must be zero or a positive integer"),
        (dict(gamma=1.5), "--gamma must lie in"),
        (dict(device="tpu"), "unknown --device 'tpu'; accepted: auto, cpu, cuda, cuda:N"),
        (dict(causal_method="pc"), "unknown --causal-method 'pc'; accepted: auto, sink, directlingam, none"),
        (dict(reset="sometimes"), "unknown --reset 'sometimes'; accepted: none, reset"),
        (dict(batch_size=100, buffer_size=10), "--batch-size (100) must not exceed --buffer-size (10)"),
        (dict(warmup_updates="no"), "--warmup-updates must be true or false, got 'no'"),
    ],
)
def test_invalid_settings_are_named(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(preset_config("small", **settings))


def test_sac_with_reset_is_refused():
    with pytest.raises(ConfigError, match="--algo sac runs without resets"):
        validate(preset_config("small", "sac", reset="reset"))


def test_unknown_preset_is_named():
    with pytest.raises(ConfigError, match="unknown --preset 'huge'; accepted: paper, small"):
        preset_config("huge")
