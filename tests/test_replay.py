import numpy as np
import pytest
import torch

from ace_rl.replay import ReplayBuffer


def add_numbered(buffer: ReplayBuffer, number: int, terminated: bool = False) -> None:
    buffer.add(np.full(2, number), np.full(1, -number), float(number), np.full(2, number + 0.5), terminated)


def test_wraps_around_and_keeps_the_latest_transitions_in_order():
    buffer = ReplayBuffer(capacity=5, obs_dim=2, action_dim=1, seed=0)
    for number in range(1, 8):
        add_numbered(buffer, number)
    assert len(buffer) == 5
    assert buffer.position == 2
    assert sorted(buffer.rewards.tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]
    states, actions, rewards = buffer.latest(3)
    np.testing.assert_array_equal(rewards, [5.0, 6.0, 7.0])
    np.testing.assert_array_equal(states[:, 0], [5.0, 6.0, 7.0])
    np.testing.assert_array_equal(actions[:, 0], [-5.0, -6.0, -7.0])
    with pytest.raises(ValueError, match="only 5 are stored"):
        buffer.latest(6)


def test_sample_returns_consistent_rows_and_terminal_flags():
    buffer = ReplayBuffer(capacity=10, obs_dim=2, action_dim=1, seed=0)
    for number in range(10):
        add_numbered(buffer, number, terminated=number % 3 == 0)
    batch = buffer.sample(64)
    numbers = batch.rewards
    torch.testing.assert_close(batch.obs[:, 0], numbers)
    torch.testing.assert_close(batch.next_obs[:, 1], numbers + 0.5)
    torch.testing.assert_close(batch.actions[:, 0], -numbers)
    torch.testing.assert_close(batch.terminated, (numbers % 3 == 0).float())
    assert set(numbers.tolist()) == set(range(10))  # 64 draws reach every stored row


def test_sampling_only_reads_filled_rows_and_is_seeded():
    first = ReplayBuffer(capacity=100, obs_dim=2, action_dim=1, seed=3)
    second = ReplayBuffer(capacity=100, obs_dim=2, action_dim=1, seed=3)
    for number in range(1, 5):
        add_numbered(first, number)
        add_numbered(second, number)
    batch = first.sample(50)
    assert batch.rewards.min() >= 1.0  # rows 4..99 are empty and never drawn
    torch.testing.assert_close(batch.rewards, second.sample(50).rewards)


def test_empty_buffer_refuses_to_sample():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(capacity=4, obs_dim=1, action_dim=1, seed=0).sample(2)
