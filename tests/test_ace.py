"""One ACE update, recomputed independently: from copies of the networks, and by a textbook SAC written out here."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal
from torch.distributions.transforms import AffineTransform, ComposeTransform, TanhTransform

from ace_rl.ace import ACE, soft_bellman_target
from ace_rl.config import preset_config
from ace_rl.replay import Batch


def test_soft_bellman_target_by_hand():
    rewards = torch.tensor([1.0, 2.0])
    terminated = torch.tensor([0.0, 1.0])
    next_q = torch.tensor([10.0, 10.0])
    next_log_prob = torch.tensor([-3.0, -3.0])
    target = soft_bellman_target(rewards, terminated, next_q, next_log_prob, torch.tensor(0.5), gamma=0.9)
    # Not terminated: 1 + 0.9 * (10 + 0.5 * 3) = 11.35; terminated: the reward alone.
    torch.testing.assert_close(target, torch.tensor([11.35, 2.0]))


def make_agent_and_batch(causal_weights):
    torch.manual_seed(0)
    config = preset_config("small", hidden_size=32, batch_size=16, reset="none", algo="ace")
    agent = ACE(5, 3, -np.ones(3), np.ones(3), config, torch.device("cpu"))
    agent.set_causal_weights(np.asarray(causal_weights))
    generator = torch.Generator().manual_seed(1)
    batch = Batch(
        obs=torch.randn(16, 5, generator=generator),
        actions=torch.rand(16, 3, generator=generator) * 2 - 1,
        rewards=torch.randn(16, generator=generator),
        next_obs=torch.randn(16, 5, generator=generator),
        terminated=(torch.rand(16, generator=generator) < 0.3).float(),
    )
    return agent, batch


@pytest.mark.parametrize("causal_weights", [[1.0, 1.0, 1.0], [2.5, 0.4, 0.1]])
def test_critic_loss_uses_the_weighted_log_prob(causal_weights):
    agent, batch = make_agent_and_batch(causal_weights)
    before = copy.deepcopy(agent)
    torch.manual_seed(123)
    metrics = agent.update(batch)

    torch.manual_seed(123)
    weights = torch.tensor(causal_weights)
    with torch.no_grad():
        next_actions, next_log_prob = before.actor.sample(batch.next_obs, weights)
        target_q = before.critic_target(batch.next_obs, next_actions).min(dim=0).values
        target = batch.rewards + 0.99 * (1 - batch.terminated) * (target_q - 1.0 * next_log_prob)
        q1, q2 = before.critic(batch.obs, batch.actions)
        expected = ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()
    torch.testing.assert_close(metrics["loss/critic"], expected)
    assert "loss/actor" not in metrics  # the actor waits for the second critic update


def test_actor_temperature_and_target_updates_on_every_second_update():
    causal_weights = [2.5, 0.4, 0.1]
    agent, batch = make_agent_and_batch(causal_weights)
    agent.update(batch)
    before = copy.deepcopy(agent)
    torch.manual_seed(5)
    metrics = agent.update(batch)

    weights = torch.tensor(causal_weights)
    torch.manual_seed(5)
    with torch.no_grad():
        before.actor.sample(batch.next_obs, weights)  # the critic target's draw comes first
        actions, log_prob = before.actor.sample(batch.obs, weights)
        alpha = before.log_alpha.exp()
        q_new = agent.critic(batch.obs, actions).min(dim=0).values  # the critic was updated first
        expected_actor_loss = (alpha * log_prob - q_new).mean()
        expected_alpha_loss = -(before.log_alpha * (log_prob - 3.0)).mean()
    torch.testing.assert_close(metrics["loss/actor"], expected_actor_loss)
    torch.testing.assert_close(metrics["loss/alpha"], expected_alpha_loss)
    torch.testing.assert_close(metrics["entropy"], -log_prob.mean())
    for target, old_target, online in zip(
        agent.critic_target.parameters(), before.critic_target.parameters(), agent.critic.parameters()
    ):
        torch.testing.assert_close(target, old_target + 0.005 * (online - old_target))
    # The gradients the update leaves: the critic's are its own loss's alone (the actor's loss reaches the critic
    # only through the frozen critic, adding nothing to them), the actor's are the actor loss's, the target
    # critic gets none. Recomputed with the same draws on a copy of the agent before the update.
    torch.manual_seed(5)
    before.critic.zero_grad(set_to_none=True)
    before.actor.zero_grad(set_to_none=True)
    with torch.no_grad():
        next_actions, next_log_prob = before.actor.sample(batch.next_obs, weights)
        next_q = before.critic_target(batch.next_obs, next_actions).min(dim=0).values
        target = batch.rewards + 0.99 * (1 - batch.terminated) * (next_q - alpha * next_log_prob)
    q1, q2 = before.critic(batch.obs, batch.actions)
    (((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()).backward()
    updated_critic = copy.deepcopy(agent.critic).requires_grad_(False)
    actions, log_prob = before.actor.sample(batch.obs, weights)
    (alpha * log_prob - updated_critic(batch.obs, actions).min(dim=0).values).mean().backward()
    for network in ("critic", "actor"):
        expected_grads = dict(getattr(before, network).named_parameters())
        for name, param in getattr(agent, network).named_parameters():
            assert param.grad is not None and torch.count_nonzero(param.grad) > 0, f"{network}.{name}"
            torch.testing.assert_close(param.grad, expected_grads[name].grad, msg=f"{network}.{name}")
    assert all(param.grad is None for param in agent.critic_target.parameters())
    assert agent.log_alpha.grad is not None and agent.log_alpha.grad.item() != 0.0
    assert all(param.requires_grad for param in agent.critic.parameters())  # unfrozen again for its next update


# --- An independent SAC: the textbook losses written out with plain torch ops -----------------------------------


class ReferenceSAC:
    """SAC with twin critics, delayed actor/temperature/target updates and a learned temperature, written
    from the textbook: its own copies of the initial weights, PyTorch's plain Adam, and the log-probability
    of the tanh-squashed Gaussian from torch.distributions. ``causal_weights`` weight the per-dimension
    log-probabilities (all ones: plain SAC)."""

    def __init__(self, agent: ACE, causal_weights, low, high, policy_frequency: int = 2) -> None:
        def leaf(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.detach().clone().requires_grad_(True)

        # (out, in) weights and (out,) biases, as F.linear takes them; the stacked critic holds (in, out) per member.
        self.actor = [(leaf(layer.weight), leaf(layer.bias)) for layer in agent.actor.linear_layers()]
        self.critics = [
            [(leaf(layer.weight[member].T), leaf(layer.bias[member, 0])) for layer in agent.critic.linear_layers()]
            for member in range(2)
        ]
        self.targets = [[(w.detach().clone(), b.detach().clone()) for w, b in critic] for critic in self.critics]
        self.log_alpha = torch.zeros(1, requires_grad=True)  # alpha = 1 at the start
        self.weights = torch.as_tensor(causal_weights, dtype=torch.float32)
        self.scale = (torch.as_tensor(high, dtype=torch.float32) - torch.as_tensor(low, dtype=torch.float32)) / 2
        self.shift = (torch.as_tensor(high, dtype=torch.float32) + torch.as_tensor(low, dtype=torch.float32)) / 2
        self.gamma, self.tau, self.policy_frequency = 0.99, 0.005, policy_frequency
        self.target_entropy = -float(len(self.weights))
        self.actor_params = [p for pair in self.actor for p in pair]
        self.critic_params = [p for critic in self.critics for pair in critic for p in pair]
        self.actor_optimizer = torch.optim.Adam(self.actor_params, lr=3e-4)
        self.critic_optimizer = torch.optim.Adam(self.critic_params, lr=3e-4)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=3e-4)
        self.updates = 0

    @staticmethod
    def mlp(layers, inputs: torch.Tensor) -> torch.Tensor:
        features = inputs
        for index, (weight, bias) in enumerate(layers[:3]):
            features = F.linear(features, weight, bias)
            features = F.elu(features) if index == 0 else F.relu(features)
        return features

    def q(self, layers, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return F.linear(self.mlp(layers, torch.cat([obs, actions], dim=-1)), *layers[3]).squeeze(-1)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.mlp(self.actor, obs)
        mean = F.linear(features, *self.actor[3])
        std = F.linear(features, *self.actor[4]).clamp(-20.0, 2.0).exp()
        pre_tanh = mean + std * torch.randn(mean.shape)  # the reparameterisation trick
        squash = ComposeTransform([TanhTransform(), AffineTransform(self.shift, self.scale)])
        action = squash(pre_tanh)
        per_dimension = Normal(mean, std).log_prob(pre_tanh) - squash.log_abs_det_jacobian(pre_tanh, action)
        return action, (per_dimension * self.weights).sum(dim=-1)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.updates += 1
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_actions, next_log_prob = self.sample(batch.next_obs)
            next_q = torch.minimum(*(self.q(target, batch.next_obs, next_actions) for target in self.targets))
            target = batch.rewards + self.gamma * (1 - batch.terminated) * (next_q - alpha * next_log_prob)
        critic_loss = sum(F.mse_loss(self.q(critic, batch.obs, batch.actions), target) for critic in self.critics)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        losses = {"loss/critic": critic_loss.detach()}
        if self.updates % self.policy_frequency == 0:
            actions, log_prob = self.sample(batch.obs)
            q_new = torch.minimum(*(self.q(critic, batch.obs, actions) for critic in self.critics))
            actor_loss = (alpha * log_prob - q_new).mean()
            self.actor_optimizer.zero_grad()
            actor_loss.backward(inputs=self.actor_params)  # the critic's weights are not the actor's to change
            self.actor_optimizer.step()
            alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.alpha_optimizer.zero_grad()
            alpha_loss.backward()
            self.alpha_optimizer.step()
            with torch.no_grad():
                for critic, target_critic in zip(self.critics, self.targets):
                    for (weight, bias), (target_weight, target_bias) in zip(critic, target_critic):
                        target_weight.copy_(self.tau * weight + (1 - self.tau) * target_weight)
                        target_bias.copy_(self.tau * bias + (1 - self.tau) * target_bias)
            losses.update({"loss/actor": actor_loss.detach(), "loss/alpha": alpha_loss.detach()})
        return losses


TOLERANCE = dict(rtol=1e-4, atol=1e-6)
LOW, HIGH = np.array([-2.0, -1.0, 0.0]), np.array([2.0, 1.0, 0.5])  # scale 2, 1, 0.25: the scale correction counts


def assert_agent_matches_reference(agent: ACE, reference: ReferenceSAC, actor_updated: bool) -> None:
    actor_layers = agent.actor.linear_layers()
    for index, layer in enumerate(actor_layers):
        weight, bias = reference.actor[index]
        torch.testing.assert_close(layer.weight, weight, **TOLERANCE, msg=f"actor layer {index} weight")
        torch.testing.assert_close(layer.bias, bias, **TOLERANCE, msg=f"actor layer {index} bias")
        if actor_updated:
            torch.testing.assert_close(layer.weight.grad, weight.grad, **TOLERANCE, msg=f"actor layer {index} gradient")
    for name, network, reference_networks in (
        ("critic", agent.critic, reference.critics),
        ("target", agent.critic_target, reference.targets),
    ):
        for index, layer in enumerate(network.linear_layers()):
            for member in range(2):
                weight, bias = reference_networks[member][index]
                label = f"{name} {member} layer {index}"
                torch.testing.assert_close(layer.weight[member].T, weight, **TOLERANCE, msg=label)
                torch.testing.assert_close(layer.bias[member, 0], bias, **TOLERANCE, msg=label)
                if name == "critic":
                    torch.testing.assert_close(layer.weight.grad[member].T, weight.grad, **TOLERANCE, msg=label)
    torch.testing.assert_close(agent.log_alpha, reference.log_alpha, **TOLERANCE)


def run_against_reference(causal_weights, updates: int, policy_frequency: int = 2) -> list[set[str]]:
    """``updates`` ACE updates and the same SAC updates on the same batches and noise, compared after each."""
    torch.manual_seed(0)
    config = preset_config(
        "small", hidden_size=32, batch_size=16, reset="none", algo="ace", policy_frequency=policy_frequency
    )
    agent = ACE(5, 3, LOW, HIGH, config, torch.device("cpu"))
    agent.set_causal_weights(np.asarray(causal_weights))
    reference = ReferenceSAC(agent, causal_weights, LOW, HIGH, policy_frequency)
    generator = torch.Generator().manual_seed(1)
    logged = []
    for update in range(updates):
        batch = Batch(
            obs=torch.randn(16, 5, generator=generator),
            actions=torch.as_tensor(
                LOW + (HIGH - LOW) * np.random.default_rng(update).uniform(size=(16, 3)), dtype=torch.float32
            ),
            rewards=torch.randn(16, generator=generator),
            next_obs=torch.randn(16, 5, generator=generator),
            terminated=(torch.rand(16, generator=generator) < 0.3).float(),
        )
        torch.manual_seed(100 + update)  # the same policy noise for both
        metrics = agent.update(batch)
        torch.manual_seed(100 + update)
        expected = reference.update(batch)
        for name, value in expected.items():
            torch.testing.assert_close(metrics[name], value, **TOLERANCE, msg=f"update {update + 1}: {name}")
        assert_agent_matches_reference(agent, reference, actor_updated="loss/actor" in expected)
        logged.append({name for name in metrics if name.startswith("loss/")})
    return logged


def test_uniform_weights_are_sac():
    run_against_reference([1.0, 1.0, 1.0], updates=4)


def test_weighted_update_is_sac_with_the_weighted_log_prob():
    run_against_reference([2.5, 0.4, 0.1], updates=4)


def test_policy_frequency_three_updates_the_actor_on_every_third_update():
    logged = run_against_reference([1.6, 1.0, 0.4], updates=7, policy_frequency=3)
    actor_updates = [index + 1 for index, names in enumerate(logged) if "loss/actor" in names]
    assert actor_updates == [3, 6]
    assert all(names == {"loss/critic"} for index, names in enumerate(logged) if index + 1 not in (3, 6))
