"""A run's own random streams, and capturing every random-number state a run draws from, so that a resumed run
continues exactly.

A run draws from generators it owns, never from process-global state: the agent's (`agent_generators`: initial
weights, the policy's sampling, TD3's noise, a soft reset's fresh networks), the replay buffer's (its batches),
and the environments' own (``reset(seed=...)`` once, then their np_random; their action spaces' for the random start
steps). So a run gives the same rows alone, in a thread beside another run, or in a notebook. The global generators
are still seeded and captured for agents of other modules (``--algo module:name``) that draw from them.
"""

from __future__ import annotations

import contextlib
import random
import threading
import zlib
from collections.abc import Iterator
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from ace_rl.errors import ConfigError
from ace_rl.suites.dmc import DMControlEnv


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators (for agents of other modules that draw from them)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _random_state_to_list(state: tuple) -> list:
    """A NumPy RandomState state as plain Python values (checkpoints are loaded with weights_only=True)."""
    kind, keys, position, has_gauss, cached = state
    return [kind, keys.tolist(), position, has_gauss, cached]


def _random_state_from_list(values: list) -> tuple:
    kind, keys, position, has_gauss, cached = values
    return (kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached)


def capture_global_rng() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": _random_state_to_list(cast(tuple, np.random.get_state())),  # legacy=True: MT19937's tuple
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_global_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_random_state_from_list(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def capture_env_rng(env: gym.Env) -> dict[str, Any]:
    """The environment's own generator (used by its resets), its action space's (random actions), and for
    dm_control the task's RandomState (which draws its initial states)."""
    state: dict[str, Any] = {
        "env": env.unwrapped.np_random.bit_generator.state,
        "action_space": env.action_space.np_random.bit_generator.state,
    }
    task = env.unwrapped
    if isinstance(task, DMControlEnv):
        state["dm_control_task"] = _random_state_to_list(task.dm_env.task.random.get_state())
    return state


def restore_env_rng(env: gym.Env, state: dict[str, Any]) -> None:
    env.unwrapped.np_random.bit_generator.state = state["env"]
    env.action_space.np_random.bit_generator.state = state["action_space"]
    if "dm_control_task" in state:  # captured from a DMControlEnv
        cast(DMControlEnv, env.unwrapped).dm_env.task.random.set_state(
            _random_state_from_list(state["dm_control_task"])
        )


def stream_seed(seed: int, stream: str) -> int:
    """A seed for one of a run's own generators (``stream``: what it draws), independent of the run's other streams
    and the same in every process."""
    return int(np.random.SeedSequence([seed, zlib.crc32(stream.encode())]).generate_state(1, np.uint64)[0] >> 1)


def agent_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """An agent's own generators: one on the CPU for the networks' initial weights, one on ``device`` for every later
    draw (the policy's sampling noise, TD3's noise, the fresh networks of a soft reset)."""
    initial = torch.Generator().manual_seed(stream_seed(seed, "initial weights"))
    draws = torch.Generator(device=device).manual_seed(stream_seed(seed, "agent draws"))
    return initial, draws


_thread_counts_lock = threading.Lock()
_thread_counts: dict[int, int] = {}  # a running run's token -> the PyTorch thread count it runs with


@contextlib.contextmanager
def run_thread_count(threads: int) -> Iterator[None]:
    """Hold PyTorch's CPU thread count for a run (``threads``; 0 keeps the process's current count).

    The count is the whole process's (torch.set_num_threads), and a run's results are bit-identical only at the same
    count, so a run that would change it under another run of this process is refused (one ConfigError line)."""
    token = object()
    with _thread_counts_lock:
        current = torch.get_num_threads()
        if threads > 0 and threads != current and _thread_counts:
            raise ConfigError(
                f"--threads {threads}: another run in this process runs with {current} PyTorch thread(s), and the "
                "thread count is the whole process's (a run's results are bit-identical only at the same count); "
                f"give both runs the same --threads ({current}), or run them one after the other or in separate "
                "processes"
            )
        if threads > 0:
            torch.set_num_threads(threads)
        _thread_counts[id(token)] = torch.get_num_threads()
    try:
        yield
    finally:
        with _thread_counts_lock:
            del _thread_counts[id(token)]
