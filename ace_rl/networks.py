"""The policies (ACE's tanh-squashed Gaussian, TD3's deterministic one), the twin critic, and the
per-dimension log-probability of the tanh-squashed Gaussian.

All networks have three hidden layers; the first activation is ELU and the next two are ReLU, as in the
official ACE code. The two Q networks share one module whose weights are stacked along a leading
dimension of size 2, so each layer of both critics is one batched matrix product.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ace_rl.hyperparameters import LOG_PROB_CORRECTIONS

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
HIDDEN_LAYERS = 3
OFFICIAL_TANH_EPSILON = 1e-6  # the official code's guard inside log(scale * (1 - tanh(u)^2) + eps)


def squashed_gaussian_log_prob(
    pre_tanh: torch.Tensor,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    action_scale: torch.Tensor,
    correction: str = "exact",
) -> torch.Tensor:
    """log pi_i(a_i|s) of every action dimension, tanh and scale correction included (shape of pre_tanh).

    With a = scale * tanh(u) + bias and u ~ N(mean, std):
    log pi_i = log N(u_i; mean_i, std_i) - log(scale_i) - log(1 - tanh(u_i)^2),
    where log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)) is the overflow-free form (``"exact"``).
    ``"official"`` subtracts log(scale_i * (1 - tanh(u_i)^2) + 1e-6) instead, as the official ACE code does:
    once tanh(u) rounds to +-1 the correction stops at -log(1e-6) = 13.8 nats (docs/algorithm.md, "Where
    ace-rl differs from the official code").
    """
    gaussian = -0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    if correction == "official":
        return gaussian - torch.log(action_scale * (1.0 - torch.tanh(pre_tanh) ** 2) + OFFICIAL_TANH_EPSILON)
    if correction != "exact":
        accepted = ", ".join(LOG_PROB_CORRECTIONS)
        raise ValueError(f"unknown log-probability correction {correction!r}; accepted: {accepted}")
    log_tanh_derivative = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
    return gaussian - torch.log(action_scale) - log_tanh_derivative


def update_flops(obs_dim: int, action_dim: int, hidden: int, batch: int, policy_frequency: int = 2) -> float:
    """Floating-point operations of one ACE (or SAC) update's matrix products, 2 per multiply-add, for the networks
    of this module (3 hidden layers of ``hidden`` units, twin critic) on a batch of ``batch`` transitions.

    A backward pass costs two forwards (gradients of inputs and of weights), one where only the inputs' gradients
    are needed; element-wise work is not counted. The actor update runs every ``policy_frequency`` critic updates.
    """
    actor = obs_dim * hidden + 2 * hidden * hidden + 2 * hidden * action_dim  # multiply-adds per sample
    critic = 2 * ((obs_dim + action_dim) * hidden + 2 * hidden * hidden + hidden)  # both Q networks
    every_update = actor + critic + 3 * critic  # next action, target critic, critic forward + backward
    # Actor forward + backward; critic forward, and its backward to the actions only (its weights are frozen).
    delayed = 3 * actor + 2 * critic
    return 2.0 * batch * (every_update + delayed / policy_frequency)


def weighted_log_prob(per_dimension_log_prob: torch.Tensor, causal_weights: torch.Tensor) -> torch.Tensor:
    """log pi_w(a|s) = sum_i w_i * log pi_i(a_i|s): ACE's causality-aware log-probability, shape (batch,)."""
    return (per_dimension_log_prob * causal_weights).sum(dim=-1)


def standard_normal(
    shape: torch.Size | tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """N(0, 1) draws of ``shape`` on ``like``'s device and dtype, from ``generator`` (None: PyTorch's global one, the
    same numbers as torch.randn_like)."""
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


class Actor(nn.Module):
    """Tanh-squashed diagonal Gaussian policy mapping observations to actions within the action bounds."""

    action_scale: torch.Tensor  # registered buffers (saved with the weights), declared for type checkers
    action_bias: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_size: int,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        log_prob_correction: str = "exact",
        generator: torch.Generator | None = None,
    ) -> None:
        """``log_prob_correction``: the tanh correction of `squashed_gaussian_log_prob`, exact or official.
        ``generator``: the run's own generator for the initial weights (None: PyTorch's global one)."""
        super().__init__()
        self.log_prob_correction = log_prob_correction
        self.hidden = nn.ModuleList(
            [nn.Linear(obs_dim, hidden_size)] + [nn.Linear(hidden_size, hidden_size) for _ in range(HIDDEN_LAYERS - 1)]
        )
        self.mean = nn.Linear(hidden_size, action_dim)
        self.log_std = nn.Linear(hidden_size, action_dim)
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for layer in self.linear_layers():
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            nn.init.zeros_(layer.bias)

    def linear_layers(self) -> list[nn.Linear]:
        return [*self.hidden, self.mean, self.log_std]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = F.elu(self.hidden[0](obs))
        for layer in itertools.islice(self.hidden, 1, None):  # slicing a ModuleList builds a new one
            features = F.relu(layer(features))
        log_std = self.log_std(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.mean(features), log_std

    def squash(self, pre_tanh: torch.Tensor) -> torch.Tensor:
        """a = scale * tanh(u) + bias: an unbounded Gaussian draw mapped into the action bounds."""
        return torch.tanh(pre_tanh) * self.action_scale + self.action_bias

    def draw(
        self, obs: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """u = mean + std * noise, reparameterised, with the mean and log std it was drawn from. ``noise``: standard
        normal draws of shape (batch, action_dim), from the caller's generator (None: from PyTorch's global one)."""
        mean, log_std = self(obs)
        noise = torch.randn_like(mean) if noise is None else noise
        return mean + log_std.exp() * noise, mean, log_std

    def sample(
        self, obs: torch.Tensor, causal_weights: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its causally weighted log-probability log pi_w(a|s) (``noise``: see draw)."""
        pre_tanh, mean, log_std = self.draw(obs, noise)
        log_prob = squashed_gaussian_log_prob(pre_tanh, mean, log_std, self.action_scale, self.log_prob_correction)
        return self.squash(pre_tanh), weighted_log_prob(log_prob, causal_weights)

    def sample_action(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The action `sample` draws (same random numbers), without its log-probability; ``generator``: whose
        numbers (None: PyTorch's global generator)."""
        mean, log_std = self(obs)
        return self.squash(mean + log_std.exp() * standard_normal(mean.shape, mean, generator))

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self(obs)
        return self.squash(mean)


class DeterministicActor(nn.Module):
    """a = scale * tanh(f(s)) + bias: a deterministic policy within the action bounds."""

    action_scale: torch.Tensor  # registered buffers, as in Actor
    action_bias: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_size: int,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> None:
        """``generator``: as Actor's."""
        super().__init__()
        self.hidden = nn.ModuleList(
            [nn.Linear(obs_dim, hidden_size)] + [nn.Linear(hidden_size, hidden_size) for _ in range(HIDDEN_LAYERS - 1)]
        )
        self.output = nn.Linear(hidden_size, action_dim)
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)
        for layer in [*self.hidden, self.output]:
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            nn.init.zeros_(layer.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = F.elu(self.hidden[0](obs))
        for layer in itertools.islice(self.hidden, 1, None):
            features = F.relu(layer(features))
        return torch.tanh(self.output(features)) * self.action_scale + self.action_bias

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


class StackedLinear(nn.Module):
    """`members` independent Linear layers evaluated with one batched matrix product.

    weight has shape (members, in_features, out_features) and bias (members, 1, out_features); the input
    is (batch, in_features), shared by all members, or (members, batch, in_features).
    """

    def __init__(
        self, members: int, in_features: int, out_features: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for member_weight in self.weight.data:
            # xavier_uniform_ reads fan-in/fan-out from the last two dims; they are symmetric for this init.
            nn.init.xavier_uniform_(member_weight, generator=generator)
        nn.init.zeros_(self.bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() == 2:
            inputs = inputs.expand(self.weight.shape[0], *inputs.shape)
        return torch.baddbmm(self.bias, inputs, self.weight)


class TwinCritic(nn.Module):
    """Both Q networks of SAC in one module: Q(s, a) returns a (2, batch) tensor."""

    members = 2

    def __init__(
        self, obs_dim: int, action_dim: int, hidden_size: int, generator: torch.Generator | None = None
    ) -> None:
        """``generator``: as Actor's."""
        super().__init__()
        self.hidden = nn.ModuleList(
            [StackedLinear(self.members, obs_dim + action_dim, hidden_size, generator)]
            + [StackedLinear(self.members, hidden_size, hidden_size, generator) for _ in range(HIDDEN_LAYERS - 1)]
        )
        self.output = StackedLinear(self.members, hidden_size, 1, generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for layer in self.linear_layers():
            layer.reset_parameters(generator)

    def linear_layers(self) -> list[StackedLinear]:
        return [*self.hidden, self.output]

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        features = F.elu(self.hidden[0](torch.cat([obs, action], dim=-1)))
        for layer in itertools.islice(self.hidden, 1, None):
            features = F.relu(layer(features))
        return self.output(features).squeeze(-1)
