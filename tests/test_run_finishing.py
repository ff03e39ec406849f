"""Every run can be finished.

- An agent whose state torch.load(weights_only=True) would refuse is stopped at its first checkpoint, in one line
  naming the entry, not at `--resume`.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import Counter, OrderedDict, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ace_rl.checkpoint import unloadable_entry

TESTS = Path(__file__).parent
TOTAL = 300
TINY = [
    "--env",
    "InvertedPendulum-v5",
    "--seed",
    "0",
    "--preset",
    "small",
    "--total-steps",
    str(TOTAL),
    "--start-steps",
    "100",
    "--batch-size",
    "32",
    "--hidden-size",
    "32",
    "--eval-every",
    "150",
    "--eval-episodes",
    "1",
    "--checkpoint-every",
    "100",
    "--threads",
    "1",
    "--no-progress",
]


def ace_rl_command(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    environment.pop("ACE_RL_TEST_SIGKILL_AT", None)
    if kill_at is not None:
        environment["ACE_RL_TEST_SIGKILL_AT"] = kill_at
    # tests/ on the path: the agent plugins below are imported by name (--algo module:name).
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), environment.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "ace_rl.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )


def state_steps(run_dir: Path) -> list[int]:
    """The env steps of the full-state checkpoints, read from the file names."""
    return sorted(int(path.name[len("state-") : -len(".pt")]) for path in (run_dir / "checkpoints").glob("state-*.pt"))


def final_step(run_dir: Path) -> int:
    return int(torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["env_step"])


def episodes(run_dir: Path) -> list[tuple[str, ...]]:
    """episodes.csv without its wall times, which differ between processes."""
    with open(run_dir / "episodes.csv", newline="") as file:
        return [tuple(value for name, value in row.items() if name != "wall_time") for row in csv.DictReader(file)]


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("ace-rl: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run the others are stopped copies of, trained to its end in one process."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = ace_rl_command("train", *TINY, "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert final_step(run_dir) == TOTAL and state_steps(run_dir)[-1] == TOTAL
    return run_dir


# ----------------------------------------------------------------------------------------------------------------
# An agent state that could not be loaded is refused when it is saved
# ----------------------------------------------------------------------------------------------------------------
def loads_with_weights_only(value: object, tmp_path: Path) -> bool:
    """Whether ``value`` comes back from torch.save and torch.load(weights_only=True), as --resume reads it."""
    path = tmp_path / "value.pt"
    torch.save({"value": value}, path)
    try:
        torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - refused, whichever way
        return False
    return True


@pytest.mark.parametrize(
    "value",
    [
        torch.zeros(2),
        nn.Parameter(torch.ones(2)),
        [1, 2.5, "a", None, True, b"x", bytearray(b"y"), 1 + 2j],
        (1, (2, 3)),
        {1, 2},
        OrderedDict(a=1),
        Counter("aab"),
        {"a": {3: [torch.ones(1), torch.Size([2, 3]), torch.device("cpu"), torch.float16]}},
        np.zeros(3),
        {"a": [np.float64(1.0)]},
        np.int64(1),
        {np.int64(1): 2},
        defaultdict(list),
        frozenset({1}),
        Path("x"),
        {"deep": {"er": [1, {"counts": np.ones(2)}]}},
    ],
    ids=repr,
)
def test_the_checkpoint_check_refuses_what_torch_load_refuses(value: object, tmp_path: Path):
    assert (unloadable_entry({"value": value}, "state") is None) == loads_with_weights_only(value, tmp_path)


def test_a_real_checkpoint_passes_the_check(uninterrupted: Path):
    [latest] = [path for path in (uninterrupted / "checkpoints").glob("state-*.pt") if str(TOTAL) in path.name]
    assert unloadable_entry(torch.load(latest, weights_only=True), "state") is None


def test_an_agent_state_holding_a_numpy_array_is_refused_at_the_first_checkpoint(tmp_path: Path):
    # The rule the check enforces, from torch itself: such a state saves, but does not load.
    assert not loads_with_weights_only({"extra": {"counts": np.zeros(2, dtype=np.int64)}}, tmp_path)

    run_dir = tmp_path / "run"
    args = [*TINY, "--algo", "numpy_state_agent:numpy_state", "--run-dir", str(run_dir)]
    refused = ace_rl_command("train", *args)
    assert refused.returncode == 2
    assert_one_error_line(
        refused.stderr,
        "agent state 'agent.extra.counts' holds a numpy.ndarray",
        "weights_only=True",
        "store a torch.Tensor or a plain list",
    )
    assert state_steps(run_dir) == []
    assert not (run_dir / "checkpoints" / "final.pt").exists()
    assert list((run_dir / "checkpoints").glob("*.tmp")) == []
    # It stopped at the first checkpoint due (the first episode end after 100 env steps), not at the end.
    assert int(episodes(run_dir)[-1][0]) < 200
