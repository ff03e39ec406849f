"""Gradient dormancy, reset factors and the soft reset, on hand-made networks and gradients."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from ace_rl.ace import ACE
from ace_rl.config import preset_config
from ace_rl.networks import StackedLinear
from ace_rl.replay import ReplayBuffer
from ace_rl.resets import (
    causal_reset_factor,
    dormancy_ratio,
    dormant_neurons,
    fresh_copy,
    neuron_grad_norms,
    reset_factor,
    soft_reset,
)


def linear_with_grad(rows: list[list[float]]) -> nn.Linear:
    grad = torch.tensor(rows)
    layer = nn.Linear(grad.shape[1], grad.shape[0])
    layer.weight.grad = grad
    return layer


def test_dormancy_ratio_on_hand_made_gradients():
    # Row norms 5, 5, 5, 0.1 -> mean 3.775, threshold 0.189: one dormant neuron of four.
    first = linear_with_grad([[3.0, 4.0], [0.0, 5.0], [5.0, 0.0], [0.0, 0.1]])
    # Row norms 1 and 0.04 -> mean 0.52, threshold 0.026: none dormant (0.04 > 0.026).
    second = linear_with_grad([[1.0, 0.0, 0.0, 0.0], [0.0, 0.04, 0.0, 0.0]])
    # Row norms 2, 0, 0 -> mean 0.667: two dormant neurons of three.
    third = linear_with_grad([[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert dormancy_ratio([first], 0.05) == pytest.approx(1 / 4)
    assert dormancy_ratio([first, second, third], 0.05) == pytest.approx(3 / 9)
    # A higher threshold catches the second layer's small neuron too (0.04 < 0.1 * 0.52).
    assert dormancy_ratio([second], 0.1) == pytest.approx(1 / 2)


def test_stacked_layer_neurons_are_columns_judged_per_member():
    layer = StackedLinear(2, 2, 3)
    grad = torch.zeros(2, 2, 3)
    grad[0, :, 0] = torch.tensor([3.0, 4.0])  # member 0: norms 5, 0, 0 -> two dormant
    grad[1] = 1.0  # member 1: all norms equal -> none dormant
    layer.weight.grad = grad
    norms = neuron_grad_norms(layer)
    torch.testing.assert_close(norms[0], torch.tensor([5.0, 0.0, 0.0]))
    mask = dormant_neurons(norms, 0.05)
    assert mask.tolist() == [[False, True, True], [False, False, False]]
    assert dormancy_ratio([layer], 0.05) == pytest.approx(2 / 6)


def test_reset_factor_is_one_minus_dormancy_clipped():
    assert reset_factor(0.0) == pytest.approx(0.9)
    assert reset_factor(0.3) == pytest.approx(0.7)
    assert reset_factor(0.95) == pytest.approx(0.2)


def test_causal_reset_factor_from_weight_spread():
    assert causal_reset_factor(torch.ones(4)) == pytest.approx(0.5)  # 1 - (e^0 - 0.5)
    spread = torch.tensor([0.95, 1.05])  # d = 0.1: 1 - (e^-0.8 - 0.5) = 1.0507 -> 0.9
    assert causal_reset_factor(spread) == pytest.approx(0.9)
    small = torch.tensor([0.99, 1.01])  # d = 0.02: 1.5 - e^-0.16
    assert causal_reset_factor(small) == pytest.approx(1.5 - np.exp(-0.16))


def small_network() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6))


def test_soft_reset_with_factor_one_leaves_the_network_unchanged():
    network = small_network()
    before = copy.deepcopy(network.state_dict())
    soft_reset(network, [network[0], network[2]], factor=1.0)
    for name, value in network.state_dict().items():
        torch.testing.assert_close(value, before[name])


def test_soft_reset_with_factor_zero_gives_a_fresh_orthogonal_network():
    network = small_network()
    soft_reset(network, [network[0], network[2]], factor=0.0)
    square = network[2].weight
    torch.testing.assert_close(square @ square.T, torch.eye(6), atol=1e-5, rtol=0)
    wide = network[0].weight  # 6 x 4: orthonormal columns
    torch.testing.assert_close(wide.T @ wide, torch.eye(4), atol=1e-5, rtol=0)
    assert torch.count_nonzero(network[0].bias) == 0 and torch.count_nonzero(network[2].bias) == 0


def test_soft_reset_interpolates_with_the_fresh_copy():
    network = small_network()
    before = copy.deepcopy(network)
    torch.manual_seed(7)
    soft_reset(network, [network[0], network[2]], factor=0.3)
    torch.manual_seed(7)
    fresh = fresh_copy(before, [before[0], before[2]])
    for (name, value), fresh_value in zip(before.state_dict().items(), fresh.state_dict().values()):
        torch.testing.assert_close(network.state_dict()[name], 0.3 * value + 0.7 * fresh_value)


def test_dormant_soft_reset_only_touches_dormant_neurons():
    network = small_network()
    before = copy.deepcopy(network)
    masks = [torch.tensor([[True, False, False, False, False, True]]), torch.zeros(1, 6, dtype=torch.bool)]
    soft_reset(network, [network[0], network[2]], factor=0.0, dormant_masks=masks)
    changed_rows = (network[0].weight != before[0].weight).any(dim=1)
    assert changed_rows.tolist() == [True, False, False, False, False, True]
    torch.testing.assert_close(network[2].weight, before[2].weight)


def filled_buffer(obs_dim: int, action_dim: int, count: int = 300) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(count, obs_dim, action_dim, seed=0)
    for _ in range(count):
        buffer.add(rng.normal(size=obs_dim), rng.uniform(-1, 1, action_dim), rng.normal(), rng.normal(size=obs_dim), False)
    return buffer


@pytest.mark.parametrize("kind", ["reset", "causal_reset", "dormant_reset", "causal_dormant_reset"])
def test_agent_reset_clears_optimizer_state_and_reports_the_factor(kind):
    torch.manual_seed(0)
    config = preset_config("small", hidden_size=16, batch_size=32, reset=kind, reset_interval=4, reset_start=0)
    agent = ACE(3, 2, -np.ones(2), np.ones(2), config, torch.device("cpu"))
    buffer = filled_buffer(3, 2)
    for _ in range(3):
        _, reset = agent.update(buffer.sample(32))
        assert reset is None
    assert len(agent.actor_optimizer.state) > 0 and len(agent.critic_optimizer.state) > 0
    before = copy.deepcopy(agent.actor.state_dict())
    _, reset = agent.update(buffer.sample(32))
    assert reset is not None and reset.update == 4 and reset.kind == kind
    assert len(agent.actor_optimizer.state) == 0 and len(agent.critic_optimizer.state) == 0
    assert len(agent.alpha_optimizer.state) > 0  # the temperature is not reset
    expected_factor = causal_reset_factor(agent.causal_weights) if kind.startswith("causal") else reset_factor(reset.dormancy_ratio)
    assert reset.factor == pytest.approx(expected_factor)
    changed = [not torch.equal(before[name], value) for name, value in agent.actor.state_dict().items() if "action_" not in name]
    if "dormant" in kind:
        assert 0.0 <= reset.dormancy_ratio <= 1.0
    else:
        assert all(changed)
    # Training goes on after the reset with fresh optimizer state.
    metrics, _ = agent.update(buffer.sample(32))
    assert torch.isfinite(metrics["loss/critic"])
