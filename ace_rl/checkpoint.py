"""Policy checkpoints: written to a temporary file and renamed, so a crash never leaves half a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ace_rl.networks import Actor

CHECKPOINT_NAMES: tuple[str, ...] = ("best", "final")


class CheckpointError(ValueError):
    """A checkpoint is missing or unreadable."""


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
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        torch.save(payload, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


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
