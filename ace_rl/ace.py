"""The ACE agent: Soft Actor-Critic with causality-aware entropy and gradient-dormancy-guided resets.

One call of `ACE.update` is one ACE update, and reads top to bottom:

1. critic: the soft Bellman target uses the *causally weighted* log-probability of the next action;
2. every ``policy_frequency`` critic updates: the actor, the temperature (both with the weighted
   log-probability) and the target critic;
3. every ``reset_interval`` updates (after ``reset_start``): a soft reset whose strength comes from the
   actor's gradient dormancy.

Entropy follows the official code, -E[sum_i w_i log pi_i(a_i|s)], with w = |A| * softmax(b) from the causal
model (see `ace_rl.causal`). With all-ones weights and no reset this is exactly SAC.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ace_rl.hyperparameters import ACESettings
from ace_rl.networks import Actor, TwinCritic, standard_normal
from ace_rl.replay import Batch
from ace_rl.resets import (
    RESET_VARIANTS,
    ResetVariant,
    blend_with_fresh,
    causal_reset_factor,
    clear_optimizer_state,
    dormancy_ratio,
    dormant_neurons,
    neuron_grad_norms,
    reset_factor,
)
from ace_rl.rng import agent_generators


@dataclass(frozen=True)
class ResetEvent:
    update: int
    dormancy_ratio: float
    factor: float
    kind: str


def soft_bellman_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """r + gamma * (1 - terminated) * (Q'(s', a') - alpha * log pi_w(a'|s')): no bootstrap past a terminal state."""
    return rewards + gamma * (1.0 - terminated) * (next_q - alpha * next_log_prob)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Let gradients flow through ``module`` without computing gradients for its own parameters."""
    params = list(module.parameters())
    for param in params:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in params:
            param.requires_grad_(True)


class ACE:
    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        action_low: np.ndarray,
        action_high: np.ndarray,
        config: ACESettings,
        device: torch.device,
        compile_losses: bool = False,
        fused_adam: bool = True,
        seed: int | None = None,
    ) -> None:
        """``compile_losses``: run the critic and actor losses (forward and backward) through torch.compile.
        ``seed``: the agent draws from generators of its own, seeded from it (ace_rl.rng.agent_generators); None
        draws from PyTorch's global generator."""
        self.config = config
        self.device = device
        self.action_dim = action_dim
        initial: torch.Generator | None = None
        self.generator: torch.Generator | None = None
        if seed is not None:
            initial, self.generator = agent_generators(seed, device)
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.actor = Actor(obs_dim, action_dim, config.hidden_size, low, high, config.log_prob_correction, initial).to(
            device
        )
        self.critic = TwinCritic(obs_dim, action_dim, config.hidden_size, initial).to(device)
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_target.requires_grad_(False)
        self.log_alpha = torch.zeros(1, device=device, requires_grad=True)
        self.target_entropy = -float(action_dim)
        # Fused Adam: one kernel per parameter group instead of a dozen per tensor; the same arithmetic.
        adam = functools.partial(torch.optim.Adam, lr=config.learning_rate, fused=fused_adam)
        self.actor_optimizer = adam(self.actor.parameters())
        self.critic_optimizer = adam(self.critic.parameters())
        self.alpha_optimizer = adam([self.log_alpha])
        self.causal_weights = torch.ones(action_dim, device=device)
        self.updates = 0
        self.reset_variant = ResetVariant.from_name(config.reset)
        self.last_reset: ResetEvent | None = None
        if compile_losses:
            import torch._inductor.config as inductor_config  # costs seconds at import: only when compiling

            # Random numbers drawn by PyTorch's own generator, so compiled and eager updates sample alike.
            inductor_config.fallback_random = True
            # The compiled losses replace the methods on this instance (mypy forbids assigning to a method).
            self.critic_loss = torch.compile(self.critic_loss)  # type: ignore[method-assign]
            self.actor_loss = torch.compile(self.actor_loss)  # type: ignore[method-assign]

    # ----------------------------------------------------------------------------------------------
    # Acting
    # ----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(0)
        if deterministic:
            action = self.actor.deterministic(obs_tensor)
        else:
            action = self.actor.sample_action(obs_tensor, self.generator)
        return action[0].cpu().numpy()

    def noise(self, like: torch.Tensor) -> torch.Tensor:
        """The policy's standard normal draws for a batch of observations ``like``, from the agent's generator."""
        return standard_normal((like.shape[0], self.action_dim), like, self.generator)

    def set_causal_weights(self, causal_weights: np.ndarray) -> None:
        self.causal_weights = torch.as_tensor(causal_weights, dtype=torch.float32, device=self.device)

    def trained_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        yield from (("actor." + name, param) for name, param in self.actor.named_parameters())
        yield from (("critic." + name, param) for name, param in self.critic.named_parameters())
        yield from (("critic_target." + name, param) for name, param in self.critic_target.named_parameters())
        yield "log_alpha", self.log_alpha

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def state_dict(self) -> dict:
        """Networks, temperature, optimizers, causal weights, the update counter, and the actor's latest
        gradients (a reset measures dormancy on them, also when it falls on an update without an actor step)."""
        return {
            "actor": self.actor.state_dict(),
            "actor_gradients": [
                None if param.grad is None else param.grad.detach().clone() for param in self.actor.parameters()
            ],
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "causal_weights": self.causal_weights.clone(),
            "updates": self.updates,
            **({"generator": self.generator.get_state()} if self.generator is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.causal_weights = state["causal_weights"].to(self.device)
        self.updates = int(state["updates"])
        if self.generator is not None and "generator" in state:  # absent from checkpoints before it had its own
            self.generator.set_state(state["generator"])
        for param, gradient in zip(self.actor.parameters(), state.get("actor_gradients", [])):
            param.grad = None if gradient is None else gradient.to(self.device)

    # ----------------------------------------------------------------------------------------------
    # One ACE update
    # ----------------------------------------------------------------------------------------------
    def critic_loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
        alpha: torch.Tensor,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Q1 loss + Q2 loss against r + gamma * (1 - terminated) * (min_j Q'_j(s', a') - alpha * log pi_w(a'|s')).

        ``noise``: the standard normal draws of a' (`noise`; drawn outside, so that a compiled loss takes them as
        an input)."""
        with torch.no_grad():
            next_actions, next_log_prob = self.actor.sample(next_obs, self.causal_weights, noise)
            next_q = self.critic_target(next_obs, next_actions).min(dim=0).values
            target_q = soft_bellman_target(rewards, terminated, next_q, next_log_prob, alpha, self.config.gamma)
        q_values = self.critic(obs, actions)  # (2, batch)
        return ((q_values - target_q) ** 2).mean(dim=1).sum(), q_values.detach()

    def actor_loss(
        self, obs: torch.Tensor, alpha: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha * log pi_w(a|s) - min_j Q_j(s, a), a reparameterised (``noise`` as critic_loss's); also returns
        log pi_w(a|s)."""
        actions, log_prob = self.actor.sample(obs, self.causal_weights, noise)
        q_new = self.critic(obs, actions).min(dim=0).values
        return (alpha * log_prob - q_new).mean(), log_prob.detach()

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One critic update, the delayed actor/temperature/target updates, and a reset when one is due.

        Returns the losses as tensors (reading them synchronises a GPU, so the caller reads them only when
        it logs); the reset that happened, if any, is ``last_reset``.
        """
        config = self.config
        self.updates += 1
        alpha = self.alpha

        # 1. Critic: soft Bellman target with the causally weighted log-probability of the next action.
        critic_loss, q_values = self.critic_loss(
            batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.terminated, alpha, self.noise(batch.next_obs)
        )
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        metrics = {"loss/critic": critic_loss.detach(), "q/mean": q_values.mean()}

        if self.updates % config.policy_frequency == 0:
            # 2a. Actor, through the critic but without gradients for the critic's own weights.
            with frozen(self.critic):
                actor_loss, log_prob = self.actor_loss(batch.obs, alpha, self.noise(batch.obs))
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()

            # 2b. Temperature: drive the weighted entropy -log pi_w towards the target -|A|.
            alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy)).mean()
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()

            # 2c. Target critic: Polyak averaging.
            with torch.no_grad():
                torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), config.tau)
            metrics.update(
                {
                    "loss/actor": actor_loss.detach(),
                    "loss/alpha": alpha_loss.detach(),
                    "alpha": alpha,
                    "entropy": -log_prob.mean(),
                }
            )

        # 3. Gradient-dormancy-guided soft reset.
        self.last_reset = None
        if (
            self.reset_variant is not None
            and self.updates % config.reset_interval == 0
            and self.updates > config.reset_start
        ):
            self.last_reset = self.soft_reset()
        return metrics

    def soft_reset(self) -> ResetEvent | None:
        """Blend the actor, critic and target critic with fresh networks; clear their optimizers' state.

        The factor kept of the old parameters is clip(1 - beta, 0.2, 0.9), beta the dormancy ratio of the
        actor's latest gradients (for causal_* variants: from the spread of the causal weights instead).
        dormant_* variants reset only the dormant neurons, of the critic judged by its latest gradients.
        Called by hand on an agent whose run has no resets (--reset none), it resets as ``reset`` does.
        """
        config = self.config
        variant = self.reset_variant or RESET_VARIANTS["reset"]
        actor_layers = self.actor.linear_layers()
        if any(layer.weight.grad is None for layer in actor_layers):
            return None  # no actor update yet: nothing to measure dormancy on
        beta = dormancy_ratio(actor_layers, config.dormancy_threshold)
        if variant.factor_source == "causal":
            factor = causal_reset_factor(self.causal_weights)
        else:
            factor = reset_factor(beta)

        critic_layers = self.critic.linear_layers()
        target_layers = self.critic_target.linear_layers()
        actor_masks = critic_masks = None
        if variant.scope == "dormant_neurons":
            actor_masks = [
                dormant_neurons(neuron_grad_norms(layer), config.dormancy_threshold) for layer in actor_layers
            ]
            critic_masks = [
                dormant_neurons(neuron_grad_norms(layer), config.dormancy_threshold) for layer in critic_layers
            ]
        blend_with_fresh(self.actor, actor_layers, factor, actor_masks, self.generator)
        blend_with_fresh(self.critic, critic_layers, factor, critic_masks, self.generator)
        blend_with_fresh(self.critic_target, target_layers, factor, critic_masks, self.generator)
        clear_optimizer_state(self.actor_optimizer)
        clear_optimizer_state(self.critic_optimizer)
        return ResetEvent(update=self.updates, dormancy_ratio=beta, factor=factor, kind=variant.name)
