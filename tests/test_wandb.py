"""Weights & Biases logging in offline mode: what reaches the offline run file, read back record by record.

The offline run file (`run-ID.wandb`) is a LevelDB-style log of wandb's protobuf `Record`s; `wandb_records`
reads it with wandb's own protobuf classes (wandb ships no reader for it in this version).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ace_rl.config import ConfigError, preset_config, validate
from ace_rl.rundir import RunDir

needs_wandb = pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None, reason='wandb is not installed: pip install "ace-rl[wandb]"'
)

_BLOCK = 32 * 1024
_FILE_HEADER = 7  # ":W&B", a 2-byte magic number, a version byte
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run file: 32 KiB blocks of chunks, each with a 7-byte header
    (checksum, little-endian length, chunk type), a record split over FIRST/MIDDLE/LAST chunks."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, position = [], b"", _FILE_HEADER
    while position + 7 <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < 7:  # block trailer
            position += left_in_block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:  # zero padding to the end of the block
            position += left_in_block
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def finished_records(path: Path, timeout_s: float = 60.0) -> list:
    """The records of a finished run's file: wandb's service process may still be writing it when ``finish``
    returns, so read until its exit record is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = wandb_records(path)
        if of_kind(records, "exit") or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def of_kind(records: list, kind: str) -> list:
    return [getattr(record, kind) for record in records if record.WhichOneof("record_type") == kind]


def history_rows(records: list) -> list[dict]:
    """The logged rows; a key with slashes is stored split into its parts (``nested_key``)."""
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in row.item}
        for row in of_kind(records, "history")
    ]


@pytest.fixture
def offline(monkeypatch, tmp_path: Path) -> Path:
    """W&B in offline mode, writing under tmp_path/wandb_dir."""
    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return wandb_dir


def offline_run_files(wandb_dir: Path, run_id: str) -> list[Path]:
    return sorted(wandb_dir.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))


def write_csv(path: Path, rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows(rows)


@needs_wandb
def test_scalars_config_and_tables_reach_the_offline_run(offline: Path, tmp_path: Path):
    from ace_rl.wandb_logger import ENV_STEP, WandbLogger

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    paths = RunDir(run_dir)
    metrics = [
        ["env_step", "updates", "eval_return_mean", "eval_return_std", "eval_success_rate", "wall_time"],
        [100, 50, 12.5, 1.5, "", 3.25],
        [200, 150, 20.0, 0.5, "", 7.0],
    ]
    causal = [
        ["env_step", "w0", "w1", "method", "seconds", "dropped_columns", "note"],
        [200, 0.75, 1.25, "sink", 0.01, 0, ""],
    ]
    write_csv(paths.metrics, metrics)
    write_csv(paths.causal_weights, causal)
    config = {"env": "Hopper-v5", "seed": 3, "hidden_size": 32}

    logger = WandbLogger(run_dir, config, project="ace-test", group="sweep-a", tags=("ace", "small"))
    logger.scalars({"loss/critic": 0.5, "train/episode_return": 7.0}, 100)
    logger.scalars({"loss/critic": 0.25, "eval/return_mean": 20.0}, 200)
    logger.tables(200)
    clip = None
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        import imageio.v2 as imageio

        clip = tmp_path / "clip.mp4"
        imageio.mimwrite(clip, [np.full((32, 32, 3), 20 * i, dtype=np.uint8) for i in range(8)], fps=8)
        logger.video(clip, 300)
    logger.finish()

    run_id = paths.wandb_id.read_text().strip()
    assert run_id == logger.run_id
    [run_file] = offline_run_files(offline, run_id)
    records = finished_records(run_file)
    [run] = of_kind(records, "run")
    assert (run.run_id, run.project, run.run_group, list(run.tags)) == (run_id, "ace-test", "sweep-a", ["ace", "small"])
    assert run.display_name == "run"
    logged_config = {}
    for update in of_kind(records, "config"):
        logged_config.update({item.key: json.loads(item.value_json) for item in update.update})
    assert {key: logged_config[key] for key in config} == config

    metric_definitions = {(m.name or m.glob_name, m.step_metric) for m in of_kind(records, "metric")}
    assert ("*", ENV_STEP) in metric_definitions
    rows = history_rows(records)
    scalar_rows = [{key: row[key] for key in row if not key.startswith("_")} for row in rows[:2]]
    assert scalar_rows == [
        {"loss/critic": 0.5, "train/episode_return": 7.0, ENV_STEP: 100},
        {"loss/critic": 0.25, "eval/return_mean": 20.0, ENV_STEP: 200},
    ]

    table_row = rows[2]
    assert table_row[ENV_STEP] == 200
    for key, expected in (("eval/table", metrics), ("causal/table", causal)):
        table = json.loads((run_file.parent / "files" / table_row[f"{key}/path"]).read_text())
        assert table["columns"] == expected[0]
        assert table["data"] == [[None if cell == "" else cell for cell in row] for row in expected[1:]]
    if clip is not None:
        video_row = rows[3]
        assert video_row[ENV_STEP] == 300 and video_row["eval/video/_type"] == "video-file"
        assert (run_file.parent / "files" / video_row["eval/video/path"]).read_bytes() == clip.read_bytes()


@needs_wandb
def test_a_resumed_run_continues_the_same_wandb_run(offline: Path, tmp_path: Path):
    from ace_rl.wandb_logger import WandbLogger

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = WandbLogger(run_dir, {"total_steps": 1000}, project="ace-test")
    first.scalars({"loss/critic": 1.0}, 100)
    first.finish()
    time.sleep(1.1)  # wandb names offline run folders by the second: two inits in one second share one folder
    second = WandbLogger(run_dir, {"total_steps": 2000}, project="ace-test")  # resumed with a longer budget
    second.scalars({"loss/critic": 0.5}, 200)
    second.finish()

    assert first.run_id == second.run_id == RunDir(run_dir).wandb_id.read_text().strip()
    files = offline_run_files(offline, first.run_id)
    assert len(files) == 2  # offline, each process writes its own file of the one W&B run, synced into it
    later = finished_records(files[1])
    assert [run.run_id for run in of_kind(later, "run")] == [first.run_id]
    assert history_rows(later)[0]["loss/critic"] == 0.5
    updates = {item.key: json.loads(item.value_json) for update in of_kind(later, "config") for item in update.update}
    assert updates["total_steps"] == 2000


def test_missing_wandb_is_a_one_line_error(monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    config = preset_config("small", env="Hopper-v5", wandb_project="ace")
    with pytest.raises(ConfigError) as caught:
        validate(config)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--wandb-project needs wandb")
    assert 'pip install "ace-rl[wandb]"' in message

    from ace_rl.wandb_logger import WandbError, WandbLogger

    with pytest.raises(WandbError, match=r'pip install "ace-rl\[wandb\]"'):
        WandbLogger(tmp_path, {}, project="ace")
    assert not RunDir(tmp_path).wandb_id.exists()


def test_wandb_and_video_settings_are_checked_and_may_change_on_resume(tmp_path: Path):
    from ace_rl.cli import parse_train
    from ace_rl.config import to_json_dict

    with pytest.raises(ConfigError, match="--video-every must be zero"):
        validate(preset_config("small", video_every=-5))
    with pytest.raises(ConfigError, match="--wandb-project must name a project"):
        validate(preset_config("small", wandb_project=" "))
    stored = preset_config("small", env="Hopper-v5", run_dir=tmp_path)
    RunDir(tmp_path).config.write_text(json.dumps(to_json_dict(stored)))
    resumed = parse_train(
        [
            "--resume",
            str(tmp_path),
            "--wandb-project",
            "ace",
            "--wandb-group",
            "sweep-b",
            "--wandb-tags",
            "a",
            "b",
            "--video-every",
            "5000",
        ]
    )
    assert (resumed.wandb_project, resumed.wandb_group, tuple(resumed.wandb_tags), resumed.video_every) == (
        "ace",
        "sweep-b",
        ("a", "b"),
        5000,
    )
    with pytest.raises(ConfigError, match="--seed 4 contradicts"):
        parse_train(["--resume", str(tmp_path), "--seed", "4"])  # an experiment setting still may not change
