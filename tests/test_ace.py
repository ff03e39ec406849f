"""One ACE update, recomputed independently from copies of the networks."""

import copy

import numpy as np
import pytest
import torch

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
    metrics, _ = agent.update(batch)

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
    metrics, _ = agent.update(batch)

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
    # The actor's update leaves the critic's gradients as the critic update wrote them.
    assert all(param.requires_grad for param in agent.critic.parameters())


def test_uniform_weights_are_sac():
    sac, batch = make_agent_and_batch([1.0, 1.0, 1.0])
    ace, _ = make_agent_and_batch([1.0, 1.0, 1.0])
    for update in range(4):
        torch.manual_seed(update)
        sac_metrics, _ = sac.update(batch)
        torch.manual_seed(update)
        ace_metrics, _ = ace.update(batch)
        torch.testing.assert_close(sac_metrics["loss/critic"], ace_metrics["loss/critic"])
