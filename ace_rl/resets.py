"""Gradient dormancy and the soft reset of ACE (docs/algorithm.md, "Dormancy and the soft reset").

A neuron is one output unit of a linear layer: a row of an ``nn.Linear`` weight, or one output column of
one member of a `StackedLinear`. It is gradient-dormant when the L2 norm of its
weight gradient is below ``threshold`` times the mean norm over its layer.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ace_rl.networks import StackedLinear

LinearLike = nn.Linear | StackedLinear

MIN_RESET_FACTOR = 0.2
MAX_RESET_FACTOR = 0.9

FactorSource = Literal["dormancy", "causal"]
"""Where a reset's factor comes from: the actor's gradient dormancy (`reset_factor`) or the spread of the causal
weights (`causal_reset_factor`)."""
ResetScope = Literal["all_neurons", "dormant_neurons"]
"""Which neurons a reset blends with fresh ones: all of them, or only the gradient-dormant ones."""


@dataclass(frozen=True)
class ResetVariant:
    """A soft reset variant (``--reset``) as its two independent choices."""

    factor_source: FactorSource
    scope: ResetScope

    @staticmethod
    def from_name(name: str) -> ResetVariant | None:
        """The variant of a ``--reset`` value as config.json stores it; None for ``none`` (no resets)."""
        if name == NO_RESET:
            return None
        if name not in RESET_VARIANTS:
            raise ValueError(f"unknown reset {name!r}; accepted: {', '.join([NO_RESET, *RESET_VARIANTS])}")
        return RESET_VARIANTS[name]

    @property
    def name(self) -> str:
        """The ``--reset`` value of this variant, as config.json and resets.csv write it."""
        return next(name for name, variant in RESET_VARIANTS.items() if variant == self)


NO_RESET = "none"
RESET_VARIANTS: dict[str, ResetVariant] = {
    "reset": ResetVariant("dormancy", "all_neurons"),
    "causal_reset": ResetVariant("causal", "all_neurons"),
    "dormant_reset": ResetVariant("dormancy", "dormant_neurons"),
    "causal_dormant_reset": ResetVariant("causal", "dormant_neurons"),
}
"""Every ``--reset`` value but ``none``, and its variant; the names stay those of config.json (old runs read)."""


def neuron_grad_norms(layer: LinearLike) -> torch.Tensor:
    """Gradient norm of every neuron, shape (groups, neurons): one group per independent layer."""
    grad = layer.weight.grad
    if grad is None:
        raise ValueError("the layer has no gradient yet: run a backward pass before measuring dormancy")
    if isinstance(layer, StackedLinear):
        return grad.norm(dim=1)  # weight is (members, in, out): a neuron is a column of each member
    return grad.norm(dim=1).unsqueeze(0)  # weight is (out, in): a neuron is a row


def dormant_neurons(grad_norms: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean mask of the gradient-dormant neurons of one layer's (groups, neurons) gradient norms."""
    return grad_norms < threshold * grad_norms.mean(dim=-1, keepdim=True)


def dormancy_ratio(layers: Iterable[LinearLike], threshold: float = 0.05) -> float:
    """beta: gradient-dormant neurons / all neurons over the given layers, from their current gradients."""
    dormant = 0
    total = 0
    for layer in layers:
        mask = dormant_neurons(neuron_grad_norms(layer), threshold)
        dormant += int(mask.sum())
        total += mask.numel()
    return dormant / total


def reset_factor(dormancy: float) -> float:
    """f = clip(1 - beta, 0.2, 0.9): the share of the old parameters that a soft reset keeps."""
    return min(max(1.0 - dormancy, MIN_RESET_FACTOR), MAX_RESET_FACTOR)


def causal_reset_factor(causal_weights: torch.Tensor) -> float:
    """Reset factor of the causal_* variants, from the spread of the causal weights (official code).

    With d = max(w) - min(w), f = clip(1 - (exp(-8 d) - 0.5), 0.2, 0.9): uniform weights keep half of the
    parameters, strongly differing weights keep 90 %.
    """
    spread = float(causal_weights.max() - causal_weights.min())
    return reset_factor(math.exp(-8.0 * spread) - 0.5)


def fresh_copy(
    network: nn.Module, linear_layers: Iterable[LinearLike], generator: torch.Generator | None = None
) -> nn.Module:
    """phi: a copy of ``network`` with orthogonal weights (drawn from ``generator``, on the network's device; None:
    PyTorch's global one) and zero biases in the given layers' positions."""
    fresh = copy.deepcopy(network)
    fresh_layers = {name: module for name, module in fresh.named_modules()}
    names = {id(module): name for name, module in network.named_modules()}
    for layer in linear_layers:
        fresh_layer = fresh_layers[names[id(layer)]]
        with torch.no_grad():
            if isinstance(fresh_layer, StackedLinear):
                for member_weight in fresh_layer.weight:
                    nn.init.orthogonal_(member_weight, generator=generator)
            else:
                nn.init.orthogonal_(fresh_layer.weight, generator=generator)
            fresh_layer.bias.zero_()
    return fresh


def blend_with_fresh(
    network: nn.Module,
    linear_layers: Sequence[LinearLike],
    factor: float,
    dormant_masks: list[torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> None:
    """theta <- f * theta + (1 - f) * phi in place, phi freshly initialised (from ``generator``: see fresh_copy).

    With ``dormant_masks`` (one (groups, neurons) mask per layer, from `dormant_neurons`) only the
    incoming weights and the bias of the dormant neurons are reset; the other neurons keep their values.
    """
    fresh = fresh_copy(network, linear_layers, generator)
    fresh_by_name = dict(fresh.named_modules())
    names = {id(module): name for name, module in network.named_modules()}
    with torch.no_grad():
        for index, layer in enumerate(linear_layers):
            fresh_layer = fresh_by_name[names[id(layer)]]
            for param, fresh_param in ((layer.weight, fresh_layer.weight), (layer.bias, fresh_layer.bias)):
                blended = factor * param + (1.0 - factor) * fresh_param
                if dormant_masks is None:
                    param.copy_(blended)
                else:
                    mask = _broadcast_mask(layer, param, dormant_masks[index])
                    param.copy_(torch.where(mask, blended, param))


def _broadcast_mask(layer: LinearLike, param: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Turn a (groups, neurons) neuron mask into a mask broadcastable to a weight or bias of ``layer``."""
    if isinstance(layer, StackedLinear):
        return mask.unsqueeze(1)  # weight (members, in, out) and bias (members, 1, out)
    if param.dim() == 2:
        return mask[0].unsqueeze(1)  # weight (out, in)
    return mask[0]  # bias (out,)


def clear_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Forget Adam's moment estimates and step counts, as after a fresh start."""
    optimizer.state = defaultdict(dict)
