"""The policy's log-probability and the stacked twin critic, against independent computations."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

from ace_rl.ace import ACE
from ace_rl.config import preset_config
from ace_rl.networks import Actor, StackedLinear, TwinCritic, squashed_gaussian_log_prob, weighted_log_prob


def reference_log_prob(pre_tanh, mean, log_std, scale, bias):
    """Per-dimension log-density of a = scale * tanh(u) + bias, u ~ N(mean, std), via torch.distributions."""
    distribution = TransformedDistribution(
        Normal(mean, log_std.exp()), [TanhTransform(cache_size=1), AffineTransform(bias, scale)]
    )
    action = distribution.transforms[1](distribution.transforms[0](pre_tanh))
    return distribution.log_prob(action)


@pytest.fixture
def gaussian():
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(64, 3, generator=generator, dtype=torch.float64)
    log_std = torch.randn(64, 3, generator=generator, dtype=torch.float64) * 0.5
    pre_tanh = mean + log_std.exp() * torch.randn(64, 3, generator=generator, dtype=torch.float64)
    scale = torch.tensor([1.0, 0.4, 2.0], dtype=torch.float64)
    bias = torch.tensor([0.0, 0.1, -1.0], dtype=torch.float64)
    return pre_tanh, mean, log_std, scale, bias


def test_per_dimension_log_prob_matches_torch_distributions(gaussian):
    pre_tanh, mean, log_std, scale, bias = gaussian
    ours = squashed_gaussian_log_prob(pre_tanh, mean, log_std, scale)
    expected = reference_log_prob(pre_tanh, mean, log_std, scale, bias)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-9)


def test_all_ones_weights_give_plain_sac_log_prob(gaussian):
    pre_tanh, mean, log_std, scale, bias = gaussian
    per_dimension = squashed_gaussian_log_prob(pre_tanh, mean, log_std, scale)
    sac = reference_log_prob(pre_tanh, mean, log_std, scale, bias).sum(dim=-1)
    torch.testing.assert_close(weighted_log_prob(per_dimension, torch.ones(3, dtype=torch.float64)), sac)


def test_weighted_log_prob_by_hand():
    # One sample, two dimensions, unit scale: u = (0.5, -1), mean = (0, 0), std = (1, e^-1).
    u = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    mean = torch.zeros(1, 2, dtype=torch.float64)
    log_std = torch.tensor([[0.0, -1.0]], dtype=torch.float64)
    weights = torch.tensor([1.5, 0.5], dtype=torch.float64)
    by_hand = []
    for ui, mi, si in ((0.5, 0.0, 1.0), (-1.0, 0.0, math.exp(-1.0))):
        gaussian = -0.5 * ((ui - mi) / si) ** 2 - math.log(si) - 0.5 * math.log(2 * math.pi)
        by_hand.append(gaussian - math.log(1 - math.tanh(ui) ** 2))
    expected = 1.5 * by_hand[0] + 0.5 * by_hand[1]
    per_dimension = squashed_gaussian_log_prob(u, mean, log_std, torch.ones(2, dtype=torch.float64))
    assert weighted_log_prob(per_dimension, weights).item() == pytest.approx(expected, rel=1e-12)


def test_log_prob_is_finite_for_saturated_actions():
    u = torch.tensor([[30.0, -30.0]])
    per_dimension = squashed_gaussian_log_prob(u, torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(2))
    assert torch.isfinite(per_dimension).all()


def official_log_prob(pre_tanh, mean, log_std, scale):
    """The official ACE code's per-dimension log-probability: log N(u) - log(scale (1 - tanh(u)^2) + 1e-6)."""
    return Normal(mean, log_std.exp()).log_prob(pre_tanh) - torch.log(scale * (1 - torch.tanh(pre_tanh) ** 2) + 1e-6)


def test_official_correction_matches_the_official_formula(gaussian):
    pre_tanh, mean, log_std, scale, _ = gaussian
    ours = squashed_gaussian_log_prob(pre_tanh, mean, log_std, scale, correction="official")
    torch.testing.assert_close(ours, official_log_prob(pre_tanh, mean, log_std, scale), rtol=1e-9, atol=1e-9)


def test_corrections_by_hand_on_a_saturated_draw():
    # float32, as training runs: tanh(15) and tanh(-30) round to +-1, so the official correction is log(1e-6).
    u = torch.tensor([[0.5, 15.0, -30.0]])
    assert torch.tanh(u[0, 1:]).abs().eq(1.0).all()
    zeros, ones = torch.zeros(1, 3), torch.ones(3)
    exact = squashed_gaussian_log_prob(u, zeros, zeros, ones, correction="exact")[0]
    official = squashed_gaussian_log_prob(u, zeros, zeros, ones, correction="official")[0]
    for index, ui in enumerate(u[0].tolist()):
        gaussian = -0.5 * ui**2 - 0.5 * math.log(2 * math.pi)
        # log(1 - tanh(u)^2) = -2 log cosh(u), with log cosh(u) = |u| - log 2 + log(1 + exp(-2|u|))
        log_derivative = -2.0 * (abs(ui) - math.log(2.0) + math.log1p(math.exp(-2.0 * abs(ui))))
        official_derivative = math.log(1.0 - math.tanh(ui) ** 2 + 1e-6) if abs(ui) < 1 else math.log(1e-6)
        assert exact[index].item() == pytest.approx(gaussian - log_derivative, rel=1e-6, abs=1e-3)
        assert official[index].item() == pytest.approx(gaussian - official_derivative, rel=1e-6, abs=1e-3)
    assert abs(exact[0] - official[0]).item() < 1e-5  # away from saturation the 1e-6 guard is negligible
    assert (exact[1:] - official[1:] > 10.0).all()  # 14.8 and 44.8 nats: the official form stops at 13.8


def test_unknown_correction_is_refused(gaussian):
    pre_tanh, mean, log_std, scale, _ = gaussian
    with pytest.raises(ValueError, match="official"):
        squashed_gaussian_log_prob(pre_tanh, mean, log_std, scale, correction="approximate")


@pytest.mark.parametrize("correction", ["exact", "official"])
def test_agent_samples_with_the_configured_correction(correction):
    config = preset_config("small", hidden_size=16, log_prob_correction=correction)
    agent = ACE(5, 2, -np.full(2, 0.5), np.full(2, 0.5), config, torch.device("cpu"))
    obs = torch.randn(64, 5) * 50  # large inputs give saturated draws, where the corrections part
    weights = torch.tensor([1.5, 0.5])
    torch.manual_seed(3)
    _, log_prob = agent.actor.sample(obs, weights)
    torch.manual_seed(3)
    mean, log_std = agent.actor(obs)
    pre_tanh = mean + log_std.exp() * torch.randn_like(mean)
    scale = torch.full((2,), 0.5)
    if correction == "official":
        expected = official_log_prob(pre_tanh, mean, log_std, scale)
    else:
        # torch.distributions cannot invert a saturated tanh, so the exact form by hand, via log cosh, in float64
        u = pre_tanh.double()
        log_cosh = u.abs() - math.log(2.0) + torch.log1p(torch.exp(-2.0 * u.abs()))
        expected = (Normal(mean.double(), log_std.double().exp()).log_prob(u) - math.log(0.5) + 2.0 * log_cosh).float()
    assert (pre_tanh.abs() > 9).any()  # saturated draws are among them
    torch.testing.assert_close(log_prob, (expected * weights).sum(-1), rtol=1e-4, atol=1e-3)


def test_actor_sample_returns_weighted_log_prob_of_its_action():
    torch.manual_seed(0)
    low, high = torch.tensor([-1.0, -0.4]), torch.tensor([1.0, 0.4])
    actor = Actor(obs_dim=5, action_dim=2, hidden_size=16, action_low=low, action_high=high)
    obs = torch.randn(32, 5)
    weights = torch.tensor([1.8, 0.2])
    torch.manual_seed(1)
    action, log_prob = actor.sample(obs, weights)
    torch.manual_seed(1)
    mean, log_std = actor(obs)
    pre_tanh = mean + log_std.exp() * torch.randn_like(mean)
    expected = (reference_log_prob(pre_tanh, mean, log_std, (high - low) / 2, (high + low) / 2) * weights).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-4, atol=1e-4)
    assert (action.abs() <= high).all()
    deterministic = actor.deterministic(obs)
    torch.testing.assert_close(deterministic, torch.tanh(mean) * (high - low) / 2)


def test_actor_layout_matches_the_paper_preset():
    actor = Actor(obs_dim=11, action_dim=3, hidden_size=1024, action_low=-torch.ones(3), action_high=torch.ones(3))
    assert [layer.out_features for layer in actor.hidden] == [1024, 1024, 1024]
    for layer in actor.linear_layers():
        assert torch.count_nonzero(layer.bias) == 0
        bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
        assert layer.weight.abs().max() <= bound


def test_twin_critic_equals_two_independent_networks():
    torch.manual_seed(0)
    critic = TwinCritic(obs_dim=4, action_dim=2, hidden_size=8)
    obs, action = torch.randn(10, 4), torch.randn(10, 2)
    q_values = critic(obs, action)
    assert q_values.shape == (2, 10)
    for member in range(2):
        layers = []
        for stacked in critic.linear_layers():
            linear = nn.Linear(stacked.weight.shape[1], stacked.weight.shape[2])
            linear.weight.data = stacked.weight.data[member].T.clone()
            linear.bias.data = stacked.bias.data[member, 0].clone()
            layers.append(linear)
        x = torch.cat([obs, action], dim=-1)
        x = torch.nn.functional.elu(layers[0](x))
        x = torch.relu(layers[1](x))
        x = torch.relu(layers[2](x))
        torch.testing.assert_close(q_values[member], layers[3](x).squeeze(-1))


def test_stacked_linear_members_are_initialised_independently():
    torch.manual_seed(0)
    layer = StackedLinear(2, 16, 16)
    assert not torch.equal(layer.weight[0], layer.weight[1])
