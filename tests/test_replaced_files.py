"""A run's CSV replaced under it by another program (a git stash or checkout of the results, a sync): the run stops
in one line instead of writing on into a file that no path names any more, its own rows survive, and --resume
continues it to the rows an uninterrupted run writes.

The replacement is a real one on the real file system: an older copy of episodes.csv renamed over it, as git does."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

import ace_rl
from ace_rl.callbacks import Callback, FinishedEpisode, TrainingContext
from ace_rl.rundir import RunDirError

SETTINGS = dict(
    env="Pendulum-v1",
    preset="small",
    seed=2,
    total_steps=1_200,
    start_steps=200,
    batch_size=32,
    hidden_size=16,
    eval_every=400,
    eval_episodes=1,
    checkpoint_every=400,
    causal_interval=400,
    causal_samples=200,
    threads=1,
    progress=False,
)
COMPARED = ("env_step", "episode", "return", "length")  # all but the wall time


class ReplaceEpisodesTable(Callback):
    """Keeps episodes.csv as it was after episode 2 and, after episode 4, renames a copy of that (or of
    ``other_text``) over the live file."""

    def __init__(self, other_text: bytes | None = None) -> None:
        self.other_text = other_text
        self.saved = b""

    def on_episode_end(self, context: TrainingContext, episode: FinishedEpisode) -> None:
        path = context.run_dir / "episodes.csv"
        if episode.number == 2:
            self.saved = path.read_bytes()
        if episode.number == 4:
            replacement = path.with_name("episodes.csv.new")
            replacement.write_bytes(self.other_text if self.other_text is not None else self.saved)
            os.replace(replacement, path)


def rows(path: Path) -> list[tuple[str, ...]]:
    with open(path, newline="") as file:
        return [tuple(row[name] for name in COMPARED) for row in csv.DictReader(file)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ace_rl.train(**SETTINGS, run_dir=tmp_path_factory.mktemp("whole") / "run").run_dir


def test_an_older_copy_renamed_over_the_table_stops_the_run_and_its_rows_come_back(tmp_path: Path, uninterrupted):
    run_dir = tmp_path / "run"
    with pytest.raises(RunDirError) as raised:
        ace_rl.train(**SETTINGS, run_dir=run_dir, callbacks=[ReplaceEpisodesTable()])
    message = str(raised.value)
    assert "\n" not in message
    assert f"{run_dir / 'episodes.csv'} was replaced by another program while the run wrote it" in message
    assert "its 4 rows are back in episodes.csv" in message and "--resume" in message
    # The four episodes the run had written are in the file again, as the uninterrupted run wrote them.
    assert rows(run_dir / "episodes.csv") == rows(uninterrupted / "episodes.csv")[:4]
    ace_rl.resume(run_dir, progress=False)
    assert rows(run_dir / "episodes.csv") == rows(uninterrupted / "episodes.csv")
    with open(run_dir / "metrics.csv", newline="") as resumed, open(uninterrupted / "metrics.csv", newline="") as whole:
        assert [row["eval_return_mean"] for row in csv.DictReader(resumed)] == [
            row["eval_return_mean"] for row in csv.DictReader(whole)
        ]


def test_a_table_replaced_by_other_content_is_left_and_the_runs_rows_go_beside_it(tmp_path: Path, uninterrupted):
    run_dir = tmp_path / "run"
    other = b"somebody else's file\n"
    with pytest.raises(RunDirError, match=r"its rows are in episodes\.csv\.run-rows, beside the new episodes\.csv"):
        ace_rl.train(**SETTINGS, run_dir=run_dir, callbacks=[ReplaceEpisodesTable(other)])
    assert (run_dir / "episodes.csv").read_bytes() == other
    assert rows(run_dir / "episodes.csv.run-rows") == rows(uninterrupted / "episodes.csv")[:4]
