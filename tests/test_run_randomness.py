"""A run owns its randomness (issue 29 item 3): the same run gives the same rows alone and in a thread beside
another run, while the caller keeps drawing from PyTorch's and NumPy's global generators, for ACE, SAC and TD3."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import ace_rl
from ace_rl.config import ConfigError
from ace_rl.rng import run_thread_count
from ace_rl.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # examples/
    sys.path.insert(0, str(REPO))

# Every column but the times, which differ between any two runs.
TIMES = {"wall_time", "seconds"}
COMPARED = ("metrics.csv", "episodes.csv", "causal_weights.csv", "resets.csv")
SETTINGS = dict(
    env="examples.point_reach:PointReach-v0",
    preset="small",
    total_steps=600,
    start_steps=100,
    batch_size=32,
    hidden_size=32,
    eval_every=200,
    eval_episodes=1,
    log_every=50,
    causal_interval=200,
    causal_samples=150,
    threads=1,
    progress=False,
)


def columns(run_dir: Path, name: str) -> list[list[str]]:
    lines = [line.split(",") for line in (run_dir / name).read_text().splitlines()]
    header = lines[0]
    keep = [index for index, column in enumerate(header) if column not in TIMES]
    return [[row[index] for index in keep] for row in lines]


def settings_of(algo: str, seed: int) -> dict:
    extra = {"reset_interval": 100, "reset_start": 150} if algo == "ace" else {}
    return {**SETTINGS, **extra, "algo": algo, "seed": seed}


@pytest.mark.parametrize("algo", ["ace", "sac", "td3"])
def test_a_run_in_a_thread_beside_another_gives_the_rows_it_gives_alone(tmp_path: Path, algo: str):
    alone = ace_rl.train(run_dir=tmp_path / "alone", **settings_of(algo, 3)).run_dir

    outcome: dict[str, BaseException] = {}

    def work(name: str, seed: int) -> None:
        try:
            ace_rl.train(run_dir=tmp_path / name, **settings_of(algo, seed))
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome[name] = error

    threads = [threading.Thread(target=work, args=args) for args in (("beside", 3), ("other", 4))]
    for thread in threads:
        thread.start()
    # The caller draws from the global generators meanwhile, as a notebook's own code would.
    while any(thread.is_alive() for thread in threads):
        torch.manual_seed(int(np.random.randint(1000)))
        torch.rand(100)
        for thread in threads:
            thread.join(timeout=0.01)
    assert not outcome, outcome

    for name in COMPARED if algo == "ace" else COMPARED[:2]:
        rows = columns(alone, name)
        assert len(rows) > 2, name
        assert columns(tmp_path / "beside", name) == rows, name
        assert columns(tmp_path / "other", name) != rows, name  # another seed: the comparison can tell runs apart
    final = torch.load(RunDir(alone).policy("final"), weights_only=True)["actor"]
    beside = torch.load(RunDir(tmp_path / "beside").policy("final"), weights_only=True)["actor"]
    assert final.keys() == beside.keys()
    assert all(torch.equal(final[key], beside[key]) for key in final)


def test_a_run_that_would_change_the_thread_count_under_another_is_refused():
    before = torch.get_num_threads()
    with run_thread_count(before):
        other = before + 1
        with pytest.raises(ConfigError) as refused:
            with run_thread_count(other):
                pass
        assert f"--threads {other}: another run in this process runs with {before} PyTorch thread" in str(refused.value)
        assert "\n" not in str(refused.value)
        with run_thread_count(before), run_thread_count(0):  # the same count, or the current one: accepted
            assert torch.get_num_threads() == before
    with run_thread_count(other):  # alone, a run sets its count
        assert torch.get_num_threads() == other
    torch.set_num_threads(before)
