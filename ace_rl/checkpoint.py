"""Checkpoints: the policy alone (best.pt, final.pt, for `ace-rl eval`) and the full training state
(state-*.pt, for `ace-rl train --resume`). Every file is written under a temporary name and renamed, so a
crash never leaves half a file in place of a good one, and a write that fails (a full disk) removes its
temporary file and leaves the previous file as it was.
"""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypedDict, cast

import torch
from torch import nn

from ace_rl.errors import AceRlError
from ace_rl.policy_metadata import PolicyMetadata
from ace_rl.rundir import POLICY_NAMES, RunDir, RunDirError, write_atomically
from ace_rl.trust import CodeTrust

CHECKPOINT_NAMES: tuple[str, ...] = POLICY_NAMES


class CheckpointError(AceRlError, ValueError):
    """A checkpoint is missing or unreadable."""


def save_policy(path: Path, actor: nn.Module, metadata: PolicyMetadata) -> None:
    """Save the actor's weights with what is needed to rebuild it and its task."""
    payload = {"actor": actor.state_dict(), **metadata.to_entries()}
    write_atomically(path, lambda file: torch.save(payload, cast(IO[bytes], file)))  # it needs write() only


@dataclass(frozen=True)
class PolicyFiles:
    """Where a run's best.pt and final.pt go, and the metadata each holds besides the weights and their step."""

    run_dir: Path
    metadata: dict[str, Any]

    def write(self, name: str, actor: nn.Module, env_step: int, eval_return: float | None) -> None:
        """RUN/checkpoints/NAME.pt: ``actor``'s weights, the metadata, ``env_step`` and ``eval_return``."""
        save_policy(
            RunDir(self.run_dir).policy(name),
            actor,
            PolicyMetadata.from_entries({**self.metadata, "env_step": env_step, "eval_return_mean": eval_return}),
        )


class KeptBestPolicy(TypedDict):
    """What best.pt holds, as a full-state checkpoint keeps it (so that a resumed run can restore best.pt)."""

    actor: dict[str, torch.Tensor]
    env_step: int
    eval_return_mean: float


@dataclass(frozen=True)
class BestPolicyRecovery:
    """best.pt as of a checkpoint: the best policy and return the resumed run continues with, whether best.pt must
    be written again from ``kept``, and what changed (a line for the log), if anything."""

    kept: KeptBestPolicy | None
    best_return: float
    rewrite: bool = False
    note: str | None = None


def recover_best_policy(
    path: Path, kept: KeptBestPolicy | None, best_return: float, checkpoint_keeps_best: bool
) -> BestPolicyRecovery:
    """After loading a checkpoint whose best policy is ``kept`` and best return ``best_return``: what makes best.pt
    (``path``) the best policy as of that checkpoint, the one an uninterrupted run has at that env step (a process
    killed after the checkpoint may have written a newer one, whose return the resumed run does not know). A
    best.pt written after a checkpoint that has no best policy yet is removed here; a rewrite is left to the caller,
    which writes it with the run's metadata.

    A checkpoint from before best.pt's content was kept in it (``checkpoint_keeps_best`` False) cannot restore it:
    its best.pt, if readable, stays, and its return becomes the run's best return, so that only a better policy
    replaces it."""
    try:
        # Read, not built into an actor: building one would draw from the random state just restored.
        stored = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
    except Exception:  # noqa: BLE001 - an unreadable best.pt is replaced like a missing one
        stored = None
    if not isinstance(stored, dict) or not isinstance(stored.get("actor"), dict):
        stored = None
    if not checkpoint_keeps_best:
        if stored is None or stored.get("eval_return_mean") is None:
            return BestPolicyRecovery(kept, best_return)
        found = KeptBestPolicy(
            actor=stored["actor"],
            env_step=int(stored.get("env_step", 0)),
            eval_return_mean=float(stored["eval_return_mean"]),
        )
        if found["eval_return_mean"] <= best_return:
            return BestPolicyRecovery(found, best_return)
        return BestPolicyRecovery(
            found,
            found["eval_return_mean"],
            note=f"kept {path.name} of env step {found['env_step']}, written after the checkpoint (which predates "
            f"keeping the best policy in checkpoints); its return {found['eval_return_mean']:.6g} is the run's best",
        )
    if kept is None:
        if not path.exists():
            return BestPolicyRecovery(kept, best_return)
        path.unlink(missing_ok=True)
        return BestPolicyRecovery(
            kept,
            best_return,
            note=f"removed {path.name}: it was written after the checkpoint, which has no best policy yet",
        )
    best_step, best_mean = kept["env_step"], kept["eval_return_mean"]
    if stored is not None and (stored.get("env_step"), stored.get("eval_return_mean")) == (best_step, best_mean):
        return BestPolicyRecovery(kept, best_return)
    replaced = "" if stored is None else f" in place of the one of env step {stored.get('env_step')}"
    return BestPolicyRecovery(
        kept,
        best_return,
        rewrite=True,
        note=f"restored {path.name} to the best policy as of the checkpoint (env step {best_step}){replaced}",
    )


def read_policy_file(
    path: Path, device: torch.device | str = "cpu", trust: CodeTrust | None = None
) -> tuple[nn.Module, PolicyMetadata]:
    """The policy of a best.pt / final.pt and its metadata; its ``deterministic(obs)`` gives the actions.

    The policy's class comes from the agent registered under the file's "algo". A ``module:name`` agent imports
    its module, which ``trust`` must allow (ace_rl.trust): the file is data. The file's "env" is not used here."""
    from ace_rl.agents import UnknownAgentError, agent_spec

    trust = CodeTrust.given() if trust is None else trust

    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        # weights_only: a file of unknown origin is never unpickled beyond tensors and plain values.
        payload = torch.load(path, map_location=device, weights_only=True)
        metadata = PolicyMetadata.from_entries(payload)
        weights = payload["actor"]
    except (
        RuntimeError,
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        EOFError,
        OSError,
        pickle.UnpicklingError,
    ) as error:
        raise _unreadable_policy_error(path, error) from None
    trust.check("algo", metadata.algo, f"policy file {path}")
    try:
        actor = agent_spec(metadata.algo).make_policy(
            metadata.obs_dim, metadata.action_dim, metadata.hidden_size, metadata.action_low, metadata.action_high
        )
        actor.load_state_dict(weights)
    except UnknownAgentError as error:
        raise CheckpointError(f"{path}: the policy's agent cannot be rebuilt: {error}") from error
    except (RuntimeError, KeyError, TypeError, IndexError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise _unreadable_policy_error(path, error) from None
    actor.to(device).eval()
    return actor, metadata


def _unreadable_policy_error(path: Path, error: Exception) -> CheckpointError:
    cause = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, KeyError):
        cause = f"no {error.args[0]!r} entry"
    if isinstance(error, pickle.UnpicklingError) or "weights_only" in str(error):
        cause = "not a PyTorch checkpoint of plain tensors"
    return CheckpointError(
        f"{path} is not a readable ace-rl policy checkpoint ({cause}); expected a best.pt or final.pt "
        "written by ace-rl train"
    )


def policy_env_step(path: Path) -> int | None:
    """The env step a best.pt / final.pt was written at; None where there is no such file or it cannot be read."""
    if not path.is_file():
        return None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["env_step"])
    except Exception:  # noqa: BLE001 - an unreadable file has no step, whatever the reason
        return None


# --------------------------------------------------------------------------------------------------
# Full training state: everything needed to continue a run exactly
# --------------------------------------------------------------------------------------------------
KEEP_STATES = 3


class _TrainingStateEntries(TypedDict):
    format: int
    config: dict[str, Any]
    """The run's configuration (ace_rl.config.to_json_dict), compared with config.json on resume."""
    env_step: int
    episode: int
    mid_episode: bool
    """Written mid-episode (a stop by a signal): the resumed run starts a new episode there."""
    best_return: float
    last_eval_return: float | None
    next_checkpoint: int
    elapsed_seconds: float
    agent: dict[str, Any]
    replay: dict[str, Any]
    rng: dict[str, Any]
    env_rng: dict[str, Any]
    eval_env_rng: dict[str, Any]


class TrainingState(_TrainingStateEntries, total=False):
    """The full training state a state-*.pt holds (ace_rl.trainer.Trainer.state_dict). The entries below may be
    missing from a checkpoint written by an older ace-rl: without ``best_policy`` best.pt is kept as found
    (`recover_best_policy`); without ``callbacks`` every callback starts afresh."""

    best_policy: KeptBestPolicy | None
    callbacks: dict[str, dict[str, Any]]
    """Each user callback's state_dict, keyed by its ace_rl.callbacks.callback_keys key."""


def state_path(run_dir: Path, env_step: int) -> Path:
    return RunDir(run_dir).state(env_step)


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


# What torch.load(weights_only=True) unpickles without being told of more types (torch._weights_only_unpickler).
LOADABLE_CONTAINERS: tuple[type, ...] = (dict, OrderedDict, Counter, list, tuple, set)
LOADABLE_VALUES: tuple[type, ...] = (
    str,
    bytes,
    bytearray,
    int,
    float,
    bool,
    complex,
    type(None),
    torch.Tensor,
    nn.Parameter,
    torch.Size,
    torch.device,
    torch.dtype,
)


def unloadable_entry(value: object, where: str) -> tuple[str, str] | None:
    """The first entry of ``value`` (named ``where``, keys joined by ".", list items as [i]) that
    torch.load(weights_only=True) refuses, and its type's name; None when it loads whole. Exact types: a subclass
    (numpy.float64 of float, a defaultdict of dict) is pickled as itself and refused."""
    kind = type(value)
    if kind in LOADABLE_VALUES:
        return None
    if kind not in LOADABLE_CONTAINERS:
        return where, kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(value, dict):
        for key, item in value.items():
            found = unloadable_entry(key, f"{where} key {key!r}") or unloadable_entry(item, f"{where}.{key}")
            if found is not None:
                return found
        return None
    for index, item in enumerate(cast(Iterable[object], value)):  # a list, tuple or set
        found = unloadable_entry(item, f"{where}[{index}]")
        if found is not None:
            return found
    return None


def check_loadable(state: dict[str, Any]) -> None:
    """Refuse, in one line naming the entry, a state that could be saved but not loaded again (checkpoints are
    loaded with weights_only=True): a NumPy array in an agent's state_dict() would otherwise fail only at --resume."""
    for key, value in state.items():
        found = unloadable_entry(value, str(key))
        if found is not None:
            where, type_name = found
            owner = "agent state" if key == "agent" else "training state"
            raise CheckpointError(
                f"{owner} {where!r} holds a {type_name}, which a checkpoint cannot load with weights_only=True; "
                "store a torch.Tensor or a plain list"
            )


def save_training_state(run_dir: Path, env_step: int, state: TrainingState, keep: int = KEEP_STATES) -> Path:
    """Write a full-state checkpoint safely and keep only the latest ``keep`` of them; CheckpointError, before
    anything is written, for a state that torch.load(weights_only=True) would refuse (check_loadable).

    The file is written under a temporary name, flushed to disk and renamed; its SHA-256 digest is written
    (the same way) beside it, so that a truncated or altered file is recognised when it is read back. If
    either write fails, neither file is left behind and the older checkpoints are untouched.
    """
    check_loadable(cast(dict[str, Any], state))
    path = state_path(run_dir, env_step)
    digest = hashlib.sha256()
    write_atomically(path, lambda file: torch.save(state, cast(IO[bytes], _HashingWriter(file, digest))))
    try:
        write_atomically(_digest_path(path), lambda file: file.write((digest.hexdigest() + "\n").encode()))
    except RunDirError:
        path.unlink(missing_ok=True)  # a checkpoint without its digest could never be trusted
        raise
    for old in RunDir(run_dir).states()[:-keep]:
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


def load_training_state(run_dir: Path) -> tuple[TrainingState, Path, list[str]]:
    """The newest intact full-state checkpoint of a run, its path, and why any newer ones were skipped."""
    candidates = list(reversed(RunDir(run_dir).states()))
    if not candidates:
        raise CheckpointError(f"{run_dir} has no full-state checkpoint (checkpoints/state-*.pt) to resume from")
    skipped: list[str] = []
    for path in candidates:
        problem = _integrity_problem(path)
        if problem is None:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # noqa: BLE001 - any unreadable file is skipped the same way
                problem = f"unreadable ({type(error).__name__})"
            else:
                return cast(TrainingState, state), path, skipped
        skipped.append(f"{path.name}: {problem}")
    raise CheckpointError(f"no intact checkpoint in {run_dir / 'checkpoints'}: " + "; ".join(skipped))


def remove_unusable_files(run_dir: Path, resumed_from: Path | None) -> list[str]:
    """Before a run continues: delete temporary files left by a killed process, and every state checkpoint
    newer than the one resumed from (those were found corrupt, or belong to the abandoned future), so that
    they never count among the checkpoints kept. Returns what was removed, for the log."""
    layout = RunDir(run_dir)
    removed = []
    for temporary in layout.temporary_files():
        temporary.unlink(missing_ok=True)
        removed.append(f"{temporary.name} (left by an interrupted write)")
    for path in layout.states():
        if resumed_from is None or path.name > resumed_from.name:
            path.unlink(missing_ok=True)
            _digest_path(path).unlink(missing_ok=True)
            removed.append(f"{path.name} (unusable)")
    for digest in layout.checkpoints.glob("state-*.pt.sha256"):
        if not digest.with_name(digest.name.removesuffix(".sha256")).exists():
            digest.unlink(missing_ok=True)
    return removed


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
