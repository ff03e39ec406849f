"""Gradient dormancy, reset factors and the soft reset, on hand-made networks and gradients."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from ace_rl.ace import ACE
from ace_rl.config import preset_config
from ace_rl.networks import StackedLinear, TwinCritic
from ace_rl.replay import ReplayBuffer
from ace_rl.resets import (
    ResetVariant,
    blend_with_fresh,
    causal_reset_factor,
    dormancy_ratio,
    dormant_neurons,
    neuron_grad_norms,
    reset_factor,
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


def orthogonal_like(shape: tuple[int, ...]) -> torch.Tensor:
    """What a fresh orthogonal initialisation of a tensor of this shape draws next from torch's generator."""
    return nn.init.orthogonal_(torch.empty(shape))


@pytest.mark.parametrize("factor", [1.0, 0.9, 0.3, 0.0])
def test_soft_reset_keeps_the_share_factor_of_the_old_parameters(factor: float):
    """theta <- f theta + (1 - f) phi, phi orthogonal weights and zero biases drawn layer by layer: written out here
    with the same draws. Factor 1 leaves the network exactly as it was; the others must move it."""
    network = small_network()
    old = copy.deepcopy(network.state_dict())
    torch.manual_seed(7)
    blend_with_fresh(network, [network[0], network[2]], factor=factor)
    torch.manual_seed(7)
    fresh = {"0.weight": orthogonal_like((6, 4)), "2.weight": orthogonal_like((6, 6))}
    for name, value in network.state_dict().items():
        fresh_value = fresh.get(name, torch.zeros_like(value))
        torch.testing.assert_close(value, factor * old[name] + (1.0 - factor) * fresh_value)
        assert torch.equal(value, old[name]) == (factor == 1.0), name


def test_soft_reset_with_factor_zero_gives_a_fresh_orthogonal_network():
    network = small_network()
    blend_with_fresh(network, [network[0], network[2]], factor=0.0)
    square = network[2].weight
    torch.testing.assert_close(square @ square.T, torch.eye(6), atol=1e-5, rtol=0)
    wide = network[0].weight  # 6 x 4: orthonormal columns
    torch.testing.assert_close(wide.T @ wide, torch.eye(4), atol=1e-5, rtol=0)
    assert torch.count_nonzero(network[0].bias) == 0 and torch.count_nonzero(network[2].bias) == 0


def test_dormant_soft_reset_only_touches_dormant_neurons_and_their_biases():
    network = small_network()
    with torch.no_grad():
        for layer in (network[0], network[2]):
            layer.bias.normal_()  # non-zero biases, so that resetting one shows
    before = copy.deepcopy(network)
    masks = [torch.tensor([[True, False, False, False, False, True]]), torch.zeros(1, 6, dtype=torch.bool)]
    torch.manual_seed(3)
    blend_with_fresh(network, [network[0], network[2]], factor=0.3, dormant_masks=masks)
    torch.manual_seed(3)
    fresh_weight = orthogonal_like((6, 4))  # phi of the first layer (the second layer's draw comes after it)
    rows = masks[0][0]
    torch.testing.assert_close(network[0].weight[rows], 0.3 * before[0].weight[rows] + 0.7 * fresh_weight[rows])
    torch.testing.assert_close(network[0].bias[rows], 0.3 * before[0].bias[rows])  # the fresh bias is zero
    assert torch.equal(network[0].weight[~rows], before[0].weight[~rows])
    assert torch.equal(network[0].bias[~rows], before[0].bias[~rows])
    assert torch.equal(network[2].weight, before[2].weight) and torch.equal(network[2].bias, before[2].bias)


def test_dormant_soft_reset_of_stacked_layers_resets_masked_columns_of_each_member():
    torch.manual_seed(0)
    critic = TwinCritic(obs_dim=3, action_dim=1, hidden_size=5)
    with torch.no_grad():
        for layer in critic.linear_layers():
            layer.bias.normal_()
    before = copy.deepcopy(critic)
    masks = [
        torch.tensor([[True, False, False, True, False], [False, False, True, False, False]]),
        torch.tensor([[False] * 5, [True] * 5]),  # every neuron of member 1, none of member 0
        torch.zeros(2, 5, dtype=torch.bool),
        torch.tensor([[True], [False]]),  # the output neuron of Q1 only
    ]
    torch.manual_seed(9)
    blend_with_fresh(critic, critic.linear_layers(), factor=0.25, dormant_masks=masks)
    torch.manual_seed(9)
    for index, (layer, old, mask) in enumerate(zip(critic.linear_layers(), before.linear_layers(), masks)):
        for member in range(2):
            fresh = orthogonal_like(tuple(layer.weight.shape[1:]))  # (in, out) of each member, in order
            for neuron in range(layer.weight.shape[2]):
                weight, old_weight = layer.weight[member, :, neuron], old.weight[member, :, neuron]
                bias, old_bias = layer.bias[member, 0, neuron], old.bias[member, 0, neuron]
                label = f"layer {index} member {member} neuron {neuron}"
                if mask[member, neuron]:
                    torch.testing.assert_close(weight, 0.25 * old_weight + 0.75 * fresh[:, neuron], msg=label)
                    torch.testing.assert_close(bias, 0.25 * old_bias, msg=label)
                else:
                    assert torch.equal(weight, old_weight) and torch.equal(bias, old_bias), label


def filled_buffer(obs_dim: int, action_dim: int, count: int = 300) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(count, obs_dim, action_dim, seed=0)
    for _ in range(count):
        buffer.add(
            rng.normal(size=obs_dim), rng.uniform(-1, 1, action_dim), rng.normal(), rng.normal(size=obs_dim), False
        )
    return buffer


def hand_dormant_masks(grads: list[np.ndarray], threshold: float, neuron_axis: int) -> list[np.ndarray]:
    """Per layer, which neurons' gradient norms are below ``threshold`` x their layer's (member's) mean norm.

    nn.Linear gradients are (out, in): a neuron is a row. Stacked critic gradients are (members, in, out): a
    neuron is a column of one member, judged against its own member's neurons."""
    masks = []
    for grad in grads:
        norms = np.sqrt((grad.astype(np.float64) ** 2).sum(axis=neuron_axis))  # (out,) or (members, out)
        masks.append(norms < threshold * norms.mean(axis=-1, keepdims=True))
    return masks


# Spread 0.05: the causal factor 1.5 - exp(-0.4) = 0.8297 lies inside the clip, unlike uniform weights' 0.5.
CAUSAL_WEIGHTS = np.array([1.025, 0.975])


@pytest.mark.parametrize("kind", ["reset", "causal_reset", "dormant_reset", "causal_dormant_reset"])
def test_agent_reset_clears_optimizer_state_and_reports_the_factor(kind):
    torch.manual_seed(0)
    threshold = 0.4  # high enough that a tiny network has dormant neurons, and not all of them
    config = preset_config(
        "small",
        hidden_size=16,
        batch_size=32,
        reset=kind,
        reset_interval=4,
        reset_start=0,
        dormancy_threshold=threshold,
    )
    agent = ACE(3, 2, -np.ones(2), np.ones(2), config, torch.device("cpu"))
    agent.set_causal_weights(CAUSAL_WEIGHTS)
    buffer = filled_buffer(3, 2)
    for _ in range(3):
        agent.update(buffer.sample(32))
        assert agent.last_reset is None
    assert len(agent.actor_optimizer.state) > 0 and len(agent.critic_optimizer.state) > 0

    # The same update without the reset, and the generator's state at the moment the reset draws its phi.
    batch = buffer.sample(32)
    unreset = copy.deepcopy(agent)
    unreset.config = dataclasses.replace(config, reset="none")
    unreset.reset_variant = None
    torch.manual_seed(11)
    unreset.update(batch)
    generator_at_reset = torch.get_rng_state()
    torch.manual_seed(11)
    agent.update(batch)
    reset = agent.last_reset
    assert reset is not None and reset.update == 4 and reset.kind == kind

    # Dormancy of the actor's latest gradients, and the factor, by hand.
    actor_old, critic_old, target_old = (
        unreset.actor.linear_layers(),
        unreset.critic.linear_layers(),
        unreset.critic_target.linear_layers(),
    )
    actor_masks = hand_dormant_masks([layer.weight.grad.numpy() for layer in actor_old], threshold, neuron_axis=1)
    critic_masks = hand_dormant_masks([layer.weight.grad.numpy() for layer in critic_old], threshold, neuron_axis=1)
    dormant = sum(int(mask.sum()) for mask in actor_masks)
    total = sum(mask.size for mask in actor_masks)
    assert 0 < dormant < total, "the test needs some dormant neurons, and some active ones"
    assert reset.dormancy_ratio == pytest.approx(dormant / total, abs=1e-12)
    if kind.startswith("causal"):
        factor = float(np.clip(1.5 - np.exp(-8 * (CAUSAL_WEIGHTS.max() - CAUSAL_WEIGHTS.min())), 0.2, 0.9))
        assert factor == pytest.approx(0.8297, abs=1e-4)
    else:
        factor = float(np.clip(1 - dormant / total, 0.2, 0.9))
    assert reset.factor == pytest.approx(factor, abs=1e-6)  # the agent holds the weights in float32

    # theta <- f theta + (1 - f) phi, phi orthogonal with zero biases, drawn for the actor, critic, target in turn.
    torch.set_rng_state(generator_at_reset)
    fresh_actor = [orthogonal_like(tuple(layer.weight.shape)) for layer in actor_old]
    fresh_critic = [[orthogonal_like(tuple(layer.weight.shape[1:])) for _ in range(2)] for layer in critic_old]
    fresh_target = [[orthogonal_like(tuple(layer.weight.shape[1:])) for _ in range(2)] for layer in target_old]
    dormant_only = "dormant" in kind
    for index, (layer, old) in enumerate(zip(agent.actor.linear_layers(), actor_old)):
        rows = torch.as_tensor(actor_masks[index]) if dormant_only else torch.ones(len(old.weight), dtype=torch.bool)
        blended = factor * old.weight + (1 - factor) * fresh_actor[index]
        expected_weight = torch.where(rows[:, None], blended, old.weight)
        expected_bias = torch.where(rows, factor * old.bias, old.bias)
        torch.testing.assert_close(layer.weight, expected_weight, msg=f"actor layer {index}")
        torch.testing.assert_close(layer.bias, expected_bias, msg=f"actor layer {index} bias")
    for name, network, old_layers, fresh_layers in (
        ("critic", agent.critic, critic_old, fresh_critic),
        ("target", agent.critic_target, target_old, fresh_target),
    ):
        for index, (layer, old) in enumerate(zip(network.linear_layers(), old_layers)):
            fresh = torch.stack(fresh_layers[index])
            # dormant_* variants reset the target's neurons that are dormant in the critic.
            everything = torch.ones(2, old.weight.shape[2], dtype=torch.bool)
            columns = torch.as_tensor(critic_masks[index]) if dormant_only else everything
            expected_weight = torch.where(columns[:, None, :], factor * old.weight + (1 - factor) * fresh, old.weight)
            expected_bias = torch.where(columns[:, None, :], factor * old.bias, old.bias)
            torch.testing.assert_close(layer.weight, expected_weight, msg=f"{name} layer {index}")
            torch.testing.assert_close(layer.bias, expected_bias, msg=f"{name} layer {index} bias")
    if dormant_only:
        critic_dormant = sum(int(mask.sum()) for mask in critic_masks)
        assert 0 < critic_dormant < sum(mask.size for mask in critic_masks)

    assert len(agent.actor_optimizer.state) == 0 and len(agent.critic_optimizer.state) == 0
    assert len(agent.alpha_optimizer.state) > 0  # the temperature is not reset
    torch.testing.assert_close(agent.log_alpha, unreset.log_alpha, rtol=0, atol=0)
    # Training goes on after the reset with fresh optimizer state.
    metrics = agent.update(buffer.sample(32))
    assert torch.isfinite(metrics["loss/critic"])


# --reset's values (config.json's, so old runs read) and the two choices each makes, written out by hand.
RESET_NAMES_BY_HAND: dict[str, tuple[str, str] | None] = {
    "none": None,
    "reset": ("dormancy", "all_neurons"),
    "causal_reset": ("causal", "all_neurons"),
    "dormant_reset": ("dormancy", "dormant_neurons"),
    "causal_dormant_reset": ("causal", "dormant_neurons"),
}


@pytest.mark.parametrize("name", RESET_NAMES_BY_HAND)
def test_reset_variant_from_its_name_and_back(name: str):
    variant = ResetVariant.from_name(name)
    expected = RESET_NAMES_BY_HAND[name]
    if expected is None:
        assert variant is None
        return
    assert variant is not None and (variant.factor_source, variant.scope) == expected
    assert variant.name == name
    assert ResetVariant(*expected).name == name  # built from its two fields, not looked up by name


def test_every_reset_variant_has_one_name():
    variants = [
        ResetVariant(source, scope) for source in ("dormancy", "causal") for scope in ("all_neurons", "dormant_neurons")
    ]
    assert sorted(variant.name for variant in variants) == sorted(
        name for name in RESET_NAMES_BY_HAND if name != "none"
    )


def test_an_unknown_reset_name_is_refused_with_the_accepted_ones():
    with pytest.raises(ValueError, match="unknown reset 'causal'; accepted: none, reset, causal_reset"):
        ResetVariant.from_name("causal")
