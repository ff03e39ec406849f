import numpy as np
import pytest
import torch

from ace_rl.replay import ReplayBuffer, bytes_per_transition


class Recorder:
    """Feeds a buffer episodes whose observations are numbered, and remembers every full transition."""

    def __init__(self, buffer: ReplayBuffer) -> None:
        self.buffer = buffer
        self.transitions: list[tuple[float, float, float, float, bool]] = []  # obs, action, reward, next, terminated
        self.counter = 0.0

    def episode(self, length: int, terminated: bool = False, truncated: bool = False) -> None:
        self.counter += 1000.0  # a fresh episode starts from an unrelated observation
        obs = self.counter
        for step in range(length):
            last = step == length - 1
            next_obs = obs + 1.0
            action = -obs
            self.buffer.add(np.full(2, obs), np.full(1, action), obs * 10, np.full(2, next_obs),
                            terminated and last, truncated and last)
            self.transitions.append((obs, action, obs * 10, next_obs, terminated and last))
            obs = next_obs
        self.counter = obs


def test_every_sampled_transition_is_one_that_was_stored():
    buffer = ReplayBuffer(capacity=7, obs_dim=2, action_dim=1, seed=0)
    recorder = Recorder(buffer)
    recorder.episode(3, terminated=True)
    recorder.episode(4, truncated=True)
    recorder.episode(2)  # still running: its newest next observation is held aside
    assert len(buffer) == 7
    stored = {t[2]: t for t in recorder.transitions[-7:]}
    batch = buffer.sample(200)
    for row in range(200):
        obs, action, reward, next_obs, terminated = stored[float(batch.rewards[row])]
        assert batch.obs[row].tolist() == [obs, obs]
        assert batch.actions[row].tolist() == [action]
        assert batch.next_obs[row].tolist() == [next_obs, next_obs]
        assert float(batch.terminated[row]) == float(terminated)
    assert {float(r) for r in batch.rewards} == set(stored)  # 200 draws reach all 7 rows


def test_wraps_around_and_keeps_the_latest_transitions_in_order():
    buffer = ReplayBuffer(capacity=5, obs_dim=2, action_dim=1, seed=0)
    recorder = Recorder(buffer)
    recorder.episode(4, truncated=True)
    recorder.episode(3)
    assert len(buffer) == 5 and buffer.position == 2
    states, actions, rewards = buffer.latest(3)
    expected = recorder.transitions[-3:]
    np.testing.assert_array_equal(states[:, 0], [t[0] for t in expected])
    np.testing.assert_array_equal(actions[:, 0], [t[1] for t in expected])
    np.testing.assert_array_equal(rewards, [t[2] for t in expected])
    # The oldest stored transition's next observation is read from the row after it, across the wrap.
    batch = buffer.sample(100)
    stored = {t[2]: t[3] for t in recorder.transitions[-5:]}
    for reward, next_obs in zip(batch.rewards.tolist(), batch.next_obs[:, 0].tolist()):
        assert next_obs == stored[reward]
    with pytest.raises(ValueError, match="only 5 are stored"):
        buffer.latest(6)


def test_terminated_and_truncated_episode_ends():
    buffer = ReplayBuffer(capacity=10, obs_dim=2, action_dim=1, seed=0)
    recorder = Recorder(buffer)
    recorder.episode(2, terminated=True)
    recorder.episode(2, truncated=True)
    assert buffer.terminated.tolist()[:4] == [False, True, False, False]  # truncation bootstraps
    assert buffer.episode_end.tolist()[:4] == [False, True, False, True]
    assert buffer.final_count == 2


def test_resuming_mid_episode_closes_the_interrupted_episode():
    buffer = ReplayBuffer(capacity=10, obs_dim=2, action_dim=1, seed=0)
    recorder = Recorder(buffer)
    recorder.episode(3)
    buffer.end_episode()
    recorder.episode(2)
    batch = buffer.sample(100)
    stored = {t[2]: t[3] for t in recorder.transitions}
    for reward, next_obs in zip(batch.rewards.tolist(), batch.next_obs[:, 0].tolist()):
        assert next_obs == stored[reward]


def test_state_dict_round_trip_continues_identically():
    buffer = ReplayBuffer(capacity=6, obs_dim=2, action_dim=1, seed=5)
    recorder = Recorder(buffer)
    recorder.episode(4, terminated=True)
    recorder.episode(4)
    state = buffer.state_dict()
    copy = ReplayBuffer(capacity=6, obs_dim=2, action_dim=1, seed=99)
    copy.load_state_dict(state)
    first, second = buffer.sample(32), copy.sample(32)
    for name in ("obs", "actions", "rewards", "next_obs", "terminated"):
        torch.testing.assert_close(getattr(first, name), getattr(second, name))


def test_sampling_only_reads_filled_rows_and_is_seeded():
    first = ReplayBuffer(capacity=100, obs_dim=2, action_dim=1, seed=3)
    second = ReplayBuffer(capacity=100, obs_dim=2, action_dim=1, seed=3)
    Recorder(first).episode(4)
    Recorder(second).episode(4)
    batch = first.sample(50)
    assert batch.rewards.min() >= 10_000.0  # rows 4..99 are empty and never drawn
    torch.testing.assert_close(batch.rewards, second.sample(50).rewards)


def test_empty_buffer_refuses_to_sample():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(capacity=4, obs_dim=1, action_dim=1, seed=0).sample(2)


def test_each_observation_is_stored_once():
    # Humanoid-v5: 348 observations, 17 actions, 1000-step episodes.
    assert bytes_per_transition(348, 17, 1000) == pytest.approx((348 + 17 + 1) * 4 + 6 + 348 * 4 / 1000)
    assert bytes_per_transition(348, 17, 1000) < 0.55 * (2 * 348 + 17 + 2) * 4
