"""Checkpoints: the policy alone (best.pt, final.pt, for `ace-rl eval`) and the full training state
(state-*.pt, for `ace-rl train --resume`). Every file is written under a temporary name and renamed, so a
crash never leaves half a file in place of a good one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from ace_rl.networks import Actor

CHECKPOINT_NAMES: tuple[str, ...] = ("best", "final")


class CheckpointError(ValueError):
    """A checkpoint is missing or unreadable."""


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)`` under a temporary name, flush it to disk, then rename it.

    A crash at any point leaves either the previous file or the complete new one, never half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def save_policy(path: Path, actor: Actor, metadata: dict[str, Any]) -> None:
    """Save the actor's weights with what is needed to rebuild it (sizes, action bounds, env id, ...)."""
    payload = {
        "actor": actor.state_dict(),
        "obs_dim": actor.hidden[0].in_features,
        "action_dim": actor.mean.out_features,
        "hidden_size": actor.mean.in_features,
        "action_low": (actor.action_bias - actor.action_scale).cpu(),
        "action_high": (actor.action_bias + actor.action_scale).cpu(),
        **metadata,
    }
    write_atomically(path, lambda file: torch.save(payload, file))


def load_policy(path: Path, device: torch.device | str = "cpu") -> tuple[Actor, dict[str, Any]]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        actor = Actor(
            payload["obs_dim"],
            payload["action_dim"],
            payload["hidden_size"],
            payload["action_low"],
            payload["action_high"],
        )
        actor.load_state_dict(payload["actor"])
    except (RuntimeError, KeyError, EOFError, OSError) as error:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(error).__name__}: {error})") from None
    actor.to(device).eval()
    return actor, payload


# --------------------------------------------------------------------------------------------------
# Full training state: everything needed to continue a run exactly
# --------------------------------------------------------------------------------------------------
STATE_PATTERN = "state-*.pt"
KEEP_STATES = 3


def state_path(run_dir: Path, env_step: int) -> Path:
    return run_dir / "checkpoints" / f"state-{env_step:010d}.pt"


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_training_state(run_dir: Path, env_step: int, state: dict[str, Any], keep: int = KEEP_STATES) -> Path:
    """Write a full-state checkpoint safely and keep only the latest ``keep`` of them.

    The file is written under a temporary name, flushed to disk and renamed; its SHA-256 digest is written
    (the same way) beside it, so that a truncated or altered file is recognised when it is read back.
    """
    path = state_path(run_dir, env_step)
    digest = hashlib.sha256()
    write_atomically(path, lambda file: torch.save(state, _HashingWriter(file, digest)))
    write_atomically(_digest_path(path), lambda file: file.write((digest.hexdigest() + "\n").encode()))
    for old in sorted(path.parent.glob(STATE_PATTERN))[:-keep]:
        old.unlink()
        _digest_path(old).unlink(missing_ok=True)
    return path


class _HashingWriter:
    """A write-only file object that hashes what passes through it (torch.save writes sequentially)."""

    def __init__(self, file: Any, digest: Any) -> None:
        self.file = file
        self.digest = digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def load_training_state(run_dir: Path) -> tuple[dict[str, Any], Path, list[str]]:
    """The newest intact full-state checkpoint of a run, its path, and why any newer ones were skipped."""
    candidates = sorted((run_dir / "checkpoints").glob(STATE_PATTERN), reverse=True)
    if not candidates:
        raise CheckpointError(f"{run_dir} has no full-state checkpoint (checkpoints/state-*.pt) to resume from")
    skipped = []
    for path in candidates:
        problem = _integrity_problem(path)
        if problem is None:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # noqa: BLE001 - any unreadable file is skipped the same way
                problem = f"unreadable ({type(error).__name__})"
            else:
                return state, path, skipped
        skipped.append(f"{path.name}: {problem}")
    raise CheckpointError(f"no intact checkpoint in {run_dir / 'checkpoints'}: " + "; ".join(skipped))


def _integrity_problem(path: Path) -> str | None:
    digest_file = _digest_path(path)
    if not digest_file.is_file():
        return "its .sha256 file is missing (the write did not finish)"
    expected = digest_file.read_text().strip()
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        return "truncated or corrupted (SHA-256 mismatch)"
    return None
