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
            self.buffer.add(
                np.full(2, obs),
                np.full(1, action),
                obs * 10,
                np.full(2, next_obs),
                terminated and last,
                truncated and last,
            )
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
        obs, action, _reward, next_obs, terminated = stored[float(batch.rewards[row])]
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


def stored_observation_rows(buffer: ReplayBuffer) -> list[float]:
    """The first coordinate of every observation row the buffer holds: transition rows, final rows, pending."""
    rows = buffer.obs[: buffer.size, 0].tolist() + buffer.final_obs[: buffer.final_count, 0].tolist()
    return [*rows, float(buffer.pending_next_obs[0])]


def test_each_observation_is_stored_once():
    # 10 episodes of 20 steps: 200 transitions, 210 distinct observations (each episode's 20 starts + its final one).
    obs_dim, action_dim = 5, 2
    buffer = ReplayBuffer(capacity=1000, obs_dim=obs_dim, action_dim=action_dim, seed=0)
    counter = 0.0
    seen = []
    for _episode in range(10):
        for step in range(20):
            obs, next_obs = np.full(obs_dim, counter), np.full(obs_dim, counter + 1)
            seen.append(counter)
            buffer.add(obs, np.zeros(action_dim), 0.0, next_obs, False, truncated=step == 19)
            counter += 1
        seen.append(counter)  # the episode's final observation
        counter += 1000  # the next episode starts elsewhere
    rows = stored_observation_rows(buffer)
    # Every observation is held exactly once, plus the pending copy of the newest next observation.
    assert sorted(rows[:-1]) == sorted(seen) and len(rows) - 1 == 210
    assert rows[-1] == seen[-1]
    # What a checkpoint stores: 200 x (5 obs + 2 act + 1 reward) float32, 200 x 2 bools, 200 int32 final indices,
    # 10 final observations and the pending one: 6400 + 400 + 800 + 200 + 20 = 7820 bytes.
    tensors = [value for value in buffer.state_dict().values() if isinstance(value, torch.Tensor)]
    tensors = [tensor for tensor in tensors if tensor.dtype != torch.uint8]  # the sampler's RNG state
    assert sum(tensor.nbytes for tensor in tensors) == 7820
    # The documented per-transition memory: 8 floats + 6 bytes + one final observation per 20 steps.
    assert bytes_per_transition(obs_dim, action_dim, 20) == pytest.approx(8 * 4 + 6 + 5 * 4 / 20)
    assert bytes_per_transition(obs_dim, action_dim, 20) * 200 + 5 * 4 == 7820


def test_final_observation_ring_wraps_around():
    # Capacity 3, but 9 episodes end (one- and two-step ones): the ring of final observations wraps three times.
    buffer = ReplayBuffer(capacity=3, obs_dim=2, action_dim=1, seed=0)
    recorder = Recorder(buffer)
    for length in (1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 2):
        recorder.episode(length, terminated=length == 1, truncated=length == 2)
    assert buffer.final_count == 3 and len(buffer) == 3
    assert buffer.final_position == 11 % 3  # one final row per ended episode, modulo the capacity
    stored = {t[2]: t for t in recorder.transitions[-3:]}
    indices = torch.arange(3)
    next_obs = buffer.next_observations(indices)
    for row in range(3):
        obs, _, reward, expected_next, terminated = stored[float(buffer.rewards[row])]
        assert buffer.obs[row, 0] == obs
        assert next_obs[row].tolist() == [expected_next, expected_next]
        assert bool(buffer.terminated[row]) == terminated
    # And after another wrap, mixed with a long episode that outlives the finals ring's rows it once used.
    recorder.episode(5, truncated=True)
    recorder.episode(1, terminated=True)
    stored = {t[2]: t[3] for t in recorder.transitions[-3:]}
    for reward, next_row in zip(buffer.rewards.tolist(), buffer.next_observations(indices)[:, 0].tolist()):
        assert next_row == stored[reward]
