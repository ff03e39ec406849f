"""ace-rl's SAC and TD3 against Stable-Baselines3's SAC and TD3, configured the same way, on MuJoCo tasks.

For every task, seed and implementation one run directory in ace-rl's layout is written under ``--out``:

- ``TASK__sac__sSEED``, ``TASK__td3__sSEED``: ``ace-rl train --algo sac|td3 --preset small --threads 1
  --device cpu --total-steps STEPS --seed SEED --run-dir DIR``, through ace-rl's own command line
  (``--ace-rl-source DIR`` runs it from another checkout, e.g. a ``git worktree`` of a stable commit);
- ``TASK__sb3-sac__sSEED``, ``TASK__sb3-td3__sSEED``: Stable-Baselines3 with the small preset's settings, which
  writes ``config.json`` (ace-rl's TrainConfig as JSON, ``algo`` set to ``sb3-sac`` / ``sb3-td3``, so that
  ``ace-rl report`` groups them apart: the report reads ``algo`` as a label and does not validate it),
  ``metrics.csv`` and ``episodes.csv`` with ace-rl's columns, and ``sb3.json`` (the exact SB3 arguments).

Then ``ace-rl report`` over the runs of this command (``--report-out``), a table (per task and
implementation: final return mean +- std over seeds, and the area under the evaluation curve divided by its
span, i.e. the mean height of the curve), per task and algorithm the probability that an ace-rl run ends
above an SB3 run, and a JSON result (``--json``).

Settings, shared (the small preset): 3 hidden layers x 256 for actor and critics, batch 256, Adam lr 3e-4,
gamma 0.99, tau 0.005, replay 1,000,000, one update per env step, 5,000 uniformly random env steps first;
SAC: two critics, learned temperature (initial 1.0) with target entropy -|A|; TD3: exploration noise
N(0, 0.1 x half-range), actor and targets every 2nd update, target smoothing noise 0.2 clipped to 0.5 (x
half-range). Evaluation as ace-rl's trainer does it: after the update of every env step that is a multiple
of ``eval_every`` (5,000) and of the last step, ``eval_episodes`` (10) episodes with deterministic actions
(the mean's tanh for SAC, the actor's output for TD3) on an environment of its own, seeded once with
seed + 10,000 (its action space and first reset), whose random stream continues across evaluations.

Warm-up (``--sb3-warmup``): ace-rl takes 5,000 random steps; its SAC (like ACE and the official ACE code)
updates from the first step at which the replay holds a batch (step 256), ~4,700 updates on random data before
the policy acts, while its TD3 (``--no-warmup-updates``, like the reference TD3) updates from step 5,001 on.
SB3's ``learning_starts`` ties random actions and updates together. ``ace`` (default) mirrors ace-rl: for SAC
``learning_starts=batch-1`` (first update at step 256) and random actions until ``start_steps`` through an
override of ``_sample_action``, which also leaves TD3's exploration noise off the random warm-up actions, as
ace-rl does; for TD3 ``learning_starts=start_steps``. ``sb3``: stock SB3, ``learning_starts=5000`` (random
actions and no updates until step 5,000; TD3 adds its noise to the random actions).

Not matched (also printed and stored in the JSON result and each SB3 run's sb3.json):

- Activations: ace-rl's networks use ELU after the first hidden layer and ReLU after the next two (as the
  official ACE code); SB3's ``activation_fn`` is one function for every layer: ReLU.
- Initialisation: ace-rl uses Xavier-uniform weights and zero biases; SB3 PyTorch's default (Kaiming-uniform
  with a=sqrt(5), uniform biases).
- SAC update schedule (matched since 2026-12-02): ace-rl's SAC updates the actor, the temperature and the
  target critic with every critic update, as SB3's SAC does. Before, it did so on every 2nd critic update
  (policy_frequency=2, ACE's schedule), which SB3 cannot emulate: it has no policy delay, and its
  ``target_update_interval`` is tested against the gradient step's index within one ``train()`` call, always 0
  with ``gradient_steps=1``. Each run's config.json records its policy_frequency (SB3 runs: 1), and the
  differences between the two sides' config.json files are printed and stored.
- SAC tanh correction: SB3 subtracts log(1 - tanh(u)^2 + 1e-6), which is ace-rl's ``official`` correction for
  actions in [-1, 1] (Hopper, HalfCheetah, Walker2d); ace-rl's default is ``exact``. The SB3 runs'
  config.json says log_prob_correction=official.
- SAC order inside one update: SB3 updates the temperature first, then the critic, and takes the actor's
  actions (for its loss) before the critic step; ace-rl: critic, then actor, then temperature.
- Critic loss scale: SB3's SAC uses 0.5 x (MSE1 + MSE2), ace-rl MSE1 + MSE2 (Adam is nearly scale-free).
  TD3: both MSE1 + MSE2.
- Adam: ace-rl uses fused Adam, SB3 the default one (the same arithmetic).
- Random streams: the training environments, replay sampling and network initialisations draw from
  different generators, so the runs of one seed are not paired. The evaluation environment is seeded alike.

Runs go ``--workers`` at a time (default 2), each a process of its own with one PyTorch thread; tasks run in
the order given, so the first task finishes first. Finished runs (config.json with the requested total_steps
and an evaluation at that step) are skipped, so the command can be stopped (SIGTERM or Ctrl-C: ace-rl runs
write a checkpoint) and started again: an ace-rl run continues from its checkpoint (``--resume``), an SB3 run
starts again from step 0. ``--finish-by HH:MM`` starts no run that the finished runs' wall times say would end
after that time (for a machine held until then: an SB3 run cut off is lost), and exits 75 when it left runs over.

    python benchmarks/sb3_baselines.py --ace-rl-source /tmp/acerl-stable                  # the full plan
    python benchmarks/sb3_baselines.py --quick --ace-rl-source /tmp/acerl-stable          # a check: 1 seed, 2,000 steps
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    from ace_rl.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
EVAL_SEED_OFFSET = 10_000  # ace_rl/trainer.py: the evaluation environment is seeded with seed + 10,000
EVAL_MAX_EPISODE_STEPS = 1000  # ace_rl/evaluation.py: the limit of an episode without a time limit of its own
IMPLEMENTATIONS = ("sac", "td3", "sb3-sac", "sb3-td3")
METRICS_COLUMNS = ["env_step", "updates", "eval_return_mean", "eval_return_std", "eval_success_rate", "wall_time"]
EPISODES_COLUMNS = ["env_step", "episode", "return", "length", "terminated", "wall_time"]

UNMATCHED = [
    "activations: ace-rl ELU after the first hidden layer, ReLU after the others; SB3 ReLU everywhere",
    "initialisation: ace-rl Xavier-uniform weights and zero biases; SB3 PyTorch's default Linear init",
    "SAC schedule: SB3 SAC updates actor, temperature and target critic with every critic update, as ace-rl's SAC "
    "since 2026-12-02; ace-rl runs of an earlier ace-rl did so every 2nd critic update (policy_frequency=2 in "
    "their config.json, listed below), which SB3 cannot emulate (no policy delay; target_update_interval is "
    "tested against the gradient step within one train() call, always 0 with gradient_steps=1)",
    "SAC tanh log-prob correction: SB3 log(1 - tanh^2 + 1e-6) (= ace-rl 'official' for [-1, 1] actions); "
    "ace-rl default 'exact'",
    "SAC update order: SB3 temperature -> critic -> actor (actor's actions drawn before the critic step); "
    "ace-rl critic -> actor -> temperature",
    "critic loss: SB3 SAC 0.5 x (MSE1 + MSE2), ace-rl MSE1 + MSE2 (TD3: both MSE1 + MSE2)",
    "Adam: ace-rl fused, SB3 default (same arithmetic)",
    "random streams (training env, replay sampling, initialisation) differ: seeds are not paired; "
    "the evaluation environment is seeded alike (seed + 10,000)",
]
WARMUP_NOTES = {
    "ace": "warm-up mirrored: SB3 SAC learning_starts=batch_size-1 (first update at env step 256, as ace-rl's SAC), "
    "TD3 learning_starts=start_steps (as ace-rl's TD3), and uniformly random actions until start_steps via a "
    "_sample_action override (no TD3 noise on them, as ace-rl)",
    "sb3": "warm-up stock SB3: learning_starts=start_steps (no update before it; ace-rl's SAC updates from step 256, "
    "its TD3 from step start_steps + 1) and TD3 noise added to the random warm-up actions",
}


# ------------------------------------------------------------------------------------------------ ace-rl import
def use_ace_rl_source(source: str | None) -> None:
    """Import ace_rl from ``source`` (a checkout) instead of the installed one, past an editable install's hook."""
    if source:
        sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
        sys.path.insert(0, str(Path(source).resolve()))


# Runs `ace-rl ARGS...` from ACE_RL_SOURCE when set, and says which checkout it imported.
ACE_RL_RUNNER = (
    "import os, sys\n"
    "source = os.environ.get('ACE_RL_SOURCE')\n"
    "if source:\n"
    "    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith('__editable__')]\n"
    "    sys.path.insert(0, source)\n"
    "from ace_rl.cli import main\n"
    "print('ACE_RL_FROM=%s' % os.path.dirname(os.path.dirname(sys.modules['ace_rl'].__file__)), flush=True)\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


# ------------------------------------------------------------------------------------------------ plan
@dataclasses.dataclass(frozen=True)
class Job:
    env: str
    impl: str  # sac, td3 (ace-rl) or sb3-sac, sb3-td3
    seed: int
    total_steps: int
    overrides: tuple[tuple[str, Any], ...]  # preset settings given explicitly (start_steps, eval_every, ...)
    sb3_warmup: str
    out: Path

    @property
    def name(self) -> str:
        from ace_rl.runstate import safe_name  # ace_rl is imported where it is needed, as in the workers

        return f"{safe_name(self.env)}__{self.impl}__s{self.seed}"

    @property
    def run_dir(self) -> Path:
        return self.out / self.name

    @property
    def log(self) -> Path:
        return self.out / "logs" / f"{self.name}.log"

    @property
    def is_sb3(self) -> bool:
        return self.impl.startswith("sb3-")


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items()} for row in csv.DictReader(file)]


def run_state(job: Job) -> str:
    """done, partial (an ace-rl run to resume), fresh, or stale (an SB3 run to start again)."""
    config_path = job.run_dir / "config.json"
    if not config_path.is_file():
        return "stale" if job.run_dir.exists() else "fresh"  # nothing to resume from: start again
    config = json.loads(config_path.read_text())
    if config.get("total_steps") != job.total_steps:
        raise SystemExit(
            f"{job.run_dir} was run with total_steps={config.get('total_steps')}, not {job.total_steps}; "
            "use another --out"
        )
    rows = read_metrics(job.run_dir)
    if rows and int(rows[-1]["env_step"]) == job.total_steps:
        return "done"
    return "stale" if job.is_sb3 else "partial"


# ------------------------------------------------------------------------------------------------ ace-rl runs
def ace_rl_command(job: Job, state: str) -> list[str]:
    base = [sys.executable, "-c", ACE_RL_RUNNER, "train"]
    if state == "partial":
        return [*base, "--resume", str(job.run_dir), "--no-progress"]
    command = [
        *base,
        "--env",
        job.env,
        "--algo",
        job.impl,
        "--preset",
        "small",
        "--seed",
        str(job.seed),
        "--total-steps",
        str(job.total_steps),
        "--threads",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        "--run-dir",
        str(job.run_dir),
    ]
    for name, value in job.overrides:
        command += [f"--{name.replace('_', '-')}", str(value)]
    return command


# ------------------------------------------------------------------------------------------------ SB3 runs
def sb3_config(spec: dict[str, Any]) -> tuple[TrainConfig, int]:
    """ace-rl's configuration of the run, matched to what SB3 does (see UNMATCHED), and SB3's learning_starts."""
    from ace_rl.config import preset_config

    base_algo = spec["algo"].removeprefix("sb3-")
    config = preset_config(
        "small",
        base_algo,
        env=spec["env"],
        seed=spec["seed"],
        total_steps=spec["total_steps"],
        threads=1,
        device="cpu",
        progress=False,
        run_dir=Path(spec["run_dir"]),
        **dict(spec["overrides"]),
    )
    if base_algo == "sac":  # what SB3's SAC does (see UNMATCHED)
        config = dataclasses.replace(config, policy_frequency=1, log_prob_correction="official")
    ace_warmup = spec["warmup"] == "ace" and config.warmup_updates
    learning_starts = config.batch_size - 1 if ace_warmup else config.start_steps
    return dataclasses.replace(config, warmup_updates=learning_starts < config.start_steps), learning_starts


def sb3_algorithm(
    base_algo: str, common: dict[str, Any], config: TrainConfig, action_dim: int
) -> tuple[type[OffPolicyAlgorithm], dict[str, Any]]:
    """SB3's class for ``base_algo`` (sac or td3) and its arguments: ``common`` and the algorithm's own."""
    import numpy as np
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    if base_algo == "sac":
        return SAC, dict(common, ent_coef="auto", target_entropy=-float(action_dim), target_update_interval=1)
    noise = NormalActionNoise(np.zeros(action_dim), config.exploration_noise * np.ones(action_dim))
    return TD3, dict(
        common,
        policy_delay=config.policy_frequency,
        target_policy_noise=config.policy_noise,
        target_noise_clip=config.noise_clip,
        action_noise=noise,
    )


def sb3_worker(spec: dict[str, Any]) -> None:
    """Train one SB3 run and write it in ace-rl's run-directory format (runs in a process of its own)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import stable_baselines3
    from stable_baselines3.common.callbacks import BaseCallback

    import ace_rl
    from ace_rl.actions import action_box
    from ace_rl.config import to_json_dict
    from ace_rl.envs import make_env

    print(f"ACE_RL_FROM={Path(ace_rl.__file__).resolve().parents[1]}", flush=True)
    env_id, algo, seed, total_steps, warmup = (
        spec["env"],
        spec["algo"],
        spec["seed"],
        spec["total_steps"],
        spec["warmup"],
    )
    run_dir = Path(spec["run_dir"])
    base_algo = algo.removeprefix("sb3-")
    config, learning_starts = sb3_config(spec)
    config_json = {**to_json_dict(config), "algo": algo}

    env = make_env(env_id)
    eval_env = make_env(env_id)
    eval_env.action_space.seed(seed + EVAL_SEED_OFFSET)  # ace_rl.envs.seed_env: action space and first reset
    eval_env.reset(seed=seed + EVAL_SEED_OFFSET)
    action_space = action_box(env)  # make_env has refused any other action space with a one-line error
    low, high = action_space.low, action_space.high
    if not (np.allclose(low, -1.0) and np.allclose(high, 1.0)):
        print(f"note: {env_id} actions are not [-1, 1]: noise is in SB3's scaled space, i.e. x half-range", flush=True)
    action_dim = int(action_space.shape[0])
    step_limit = (eval_env.spec.max_episode_steps if eval_env.spec is not None else None) or EVAL_MAX_EPISODE_STEPS

    common = dict(
        policy="MlpPolicy",
        env=env,
        learning_rate=config.learning_rate,
        buffer_size=config.buffer_size,
        batch_size=config.batch_size,
        tau=config.tau,
        gamma=config.gamma,
        train_freq=1,
        gradient_steps=config.updates_per_step,
        policy_kwargs=dict(net_arch=[config.hidden_size] * 3),
        learning_starts=learning_starts,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    base, kwargs = sb3_algorithm(base_algo, common, config, action_dim)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config_json)
    printable = {k: (repr(v) if k in ("env", "action_noise") else v) for k, v in kwargs.items()}
    write_json(
        run_dir / "sb3.json",
        {
            "class": f"stable_baselines3.{base.__name__}",
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "kwargs": printable,
            "warmup": warmup,
            "warmup_note": WARMUP_NOTES[warmup],
            "random_action_steps": config.start_steps,
            "unmatched": UNMATCHED,
        },
    )
    metrics = CsvWriter(run_dir / "metrics.csv", METRICS_COLUMNS)
    episodes = CsvWriter(run_dir / "episodes.csv", EPISODES_COLUMNS)
    clock = {"start": time.perf_counter()}
    state = {"evaluated": 0, "episode": 0}

    def due(step: int) -> bool:
        return step % config.eval_every == 0 or step == total_steps

    def evaluate(model: Any) -> None:
        """ace_rl.evaluation.run_episodes: reset, act deterministically, stop at termination, truncation or the
        step limit; the environment's random stream continues from one evaluation to the next."""
        step = model.num_timesteps
        if state["evaluated"] == step:
            return
        state["evaluated"] = step
        returns = np.zeros(config.eval_episodes)
        for episode in range(config.eval_episodes):
            obs, _ = eval_env.reset()  # as run_episodes: also the first episode resets again after seeding
            for _ in range(step_limit):
                action, _ = model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = eval_env.step(action)
                returns[episode] += float(reward)
                if terminated or truncated:
                    break
        metrics.write(
            [
                step,
                model._n_updates,
                float(returns.mean()),
                float(returns.std()),
                "",
                time.perf_counter() - clock["start"],
            ]
        )
        print(f"env step {step}: eval return {returns.mean():.1f} +- {returns.std():.1f}", flush=True)

    class Bench(base):  # type: ignore[misc, valid-type]
        def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> Any:
            if warmup != "ace":
                return super()._sample_action(learning_starts, action_noise, n_envs)
            random = self.num_timesteps < config.start_steps
            return super()._sample_action(config.start_steps, None if random else action_noise, n_envs)

        def train(self, gradient_steps: int, batch_size: int = 256) -> None:
            super().train(gradient_steps, batch_size)
            if due(self.num_timesteps):  # after the update of the step, as ace-rl's trainer evaluates
                evaluate(self)

    class Logging(BaseCallback):
        def _on_step(self) -> bool:
            step = self.model.num_timesteps
            info, done = self.locals["infos"][0], bool(self.locals["dones"][0])
            if done:
                state["episode"] += 1
                monitor = info.get("episode", {})
                episodes.write(
                    [
                        step,
                        state["episode"],
                        monitor.get("r", math.nan),
                        monitor.get("l", 0),
                        int(not info.get("TimeLimit.truncated", False)),
                        time.perf_counter() - clock["start"],
                    ]
                )
            # No update follows a step at or before learning_starts: evaluate here (the policy is the same).
            if due(step) and step <= learning_starts:
                evaluate(self.model)
            return True

    model = Bench(**kwargs)
    clock["start"] = time.perf_counter()
    model.learn(total_timesteps=total_steps, callback=Logging(), progress_bar=False)
    metrics.close()
    episodes.close()
    env.close()
    eval_env.close()


class CsvWriter:
    def __init__(self, path: Path, columns: list[str]) -> None:
        self.file = open(path, "w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(columns)
        self.file.flush()

    def write(self, row: list[Any]) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def write_json(path: Path, value: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(temporary, path)


# ------------------------------------------------------------------------------------------------ scheduling
class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.children: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False
        self.durations: dict[str, list[float]] = {}
        self.failures: list[str] = []
        self.remaining: list[Job] = []
        self.jobs: list[Job] = []
        self.not_started: list[str] = []
        self.finish_by: datetime | None = args.finish_by

    def expected_minutes(self, job: Job, state: str) -> float | None:
        """A run's wall time from this invocation's finished runs of its implementation, else from the finished
        runs of its implementation and task under --out (their last wall_time), scaled to what is left of it."""
        minutes = self.durations.get(job.impl)
        if not minutes:
            minutes = [
                read_metrics(other.run_dir)[-1]["wall_time"] / 60
                for other in self.jobs
                if other.impl == job.impl and other.env == job.env and run_state(other) == "done"
            ]
        if not minutes:
            return None
        left = 1.0
        if state == "partial":
            rows = read_metrics(job.run_dir)
            left = 1.0 - (int(rows[-1]["env_step"]) / job.total_steps if rows else 0.0)
        return left * sum(minutes) / len(minutes)

    def environment(self) -> dict[str, str]:
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        if self.args.ace_rl_source:
            environment["ACE_RL_SOURCE"] = str(Path(self.args.ace_rl_source).resolve())
        return environment

    def run(self, job: Job) -> None:
        if self.stopping:
            return
        state = run_state(job)
        if state == "done":
            return
        if self.finish_by is not None:
            expected = self.expected_minutes(job, state)
            if expected is not None and datetime.now() + timedelta(minutes=expected) > self.finish_by:
                with self.lock:
                    self.not_started.append(job.name)
                log(
                    f"not starting {job.name}: it takes about {expected:.1f} min and would end after "
                    f"--finish-by {self.finish_by:%H:%M}"
                )
                return
        if state == "stale":
            shutil.rmtree(job.run_dir)
        if job.is_sb3:
            spec = {
                "env": job.env,
                "algo": job.impl,
                "seed": job.seed,
                "total_steps": job.total_steps,
                "warmup": job.sb3_warmup,
                "run_dir": str(job.run_dir),
                "overrides": list(job.overrides),
            }
            command = [sys.executable, str(Path(__file__).resolve()), "--sb3-worker", json.dumps(spec)]
        else:
            command = ace_rl_command(job, state)
        job.log.parent.mkdir(parents=True, exist_ok=True)
        started = time.time()
        log(f"start {job.name}{' (resuming)' if state == 'partial' else ''}")
        with open(job.log, "a") as output:
            output.write(
                f"# {datetime.now().isoformat(timespec='seconds')} {state}: {' '.join(command[:2])} ... {' '.join(command[3:])}\n"
            )
            output.flush()
            with self.lock:
                if self.stopping:
                    return
                child = subprocess.Popen(
                    command, stdout=output, stderr=subprocess.STDOUT, env=self.environment(), cwd=job.out
                )
                self.children.add(child)
            code = child.wait()
            with self.lock:
                self.children.discard(child)
        minutes = (time.time() - started) / 60
        if code != 0:
            if not self.stopping:
                with self.lock:
                    self.failures.append(f"{job.name}: exit {code} (see {job.log})")
                    self.remaining.remove(job)  # not left to run: the estimate of what is left leaves it out
                log(f"FAILED {job.name}: exit {code} after {minutes:.1f} min (see {job.log})")
            return
        rows = read_metrics(job.run_dir)
        if run_state(job) != "done":  # an ace-rl run stopped by SIGTERM exits 0 after its checkpoint
            reached = int(rows[-1]["env_step"]) if rows else 0
            log(f"stopped {job.name} after {minutes:.1f} min, last evaluation at step {reached:,}")
            return
        final = rows[-1]["eval_return_mean"] if rows else math.nan
        with self.lock:
            if state == "fresh" or state == "stale":
                self.durations.setdefault(job.impl, []).append(minutes)
            self.remaining.remove(job)
            eta = self.eta()
        log(f"done {job.name} in {minutes:.1f} min: final eval return {final:.1f}; {eta}")

    def eta(self) -> str:
        if not self.durations:
            return f"{len(self.remaining)} runs left"
        mean_all = sum(sum(v) for v in self.durations.values()) / sum(len(v) for v in self.durations.values())
        left = (
            sum(
                (sum(self.durations[j.impl]) / len(self.durations[j.impl])) if j.impl in self.durations else mean_all
                for j in self.remaining
            )
            / self.args.workers
        )
        finish = datetime.now() + timedelta(minutes=left)
        return f"{len(self.remaining)} runs left, about {left:.0f} min more (finish ~{finish:%H:%M})"

    def stop(self, signum: int, frame: object) -> None:
        with self.lock:
            self.stopping = True
            children = list(self.children)
        log(
            f"stopping on {signal.Signals(signum).name}: ace-rl runs write a checkpoint; start the command again to continue"
        )
        for child in children:
            child.send_signal(signal.SIGTERM)


def finish_time(text: str) -> datetime:
    try:
        clock = datetime.strptime(text, "%H:%M").time()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time of day as HH:MM, e.g. 23:30") from None
    now = datetime.now()
    deadline = datetime.combine(now.date(), clock)
    return deadline if deadline > now else deadline + timedelta(days=1)


def log(message: str) -> None:
    # one write per line: print() writes the text and the newline apart, and two workers' lines then run together
    sys.stdout.write(f"[{datetime.now():%Y-%m-%d %H:%M:%S}] {message}\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------------ results
def run_auc(steps: list[float], values: list[float]) -> float:
    """Area under the evaluation curve from its first to its last step, divided by that span (ace_rl.report)."""
    if len(steps) < 2:
        return values[0] if values else math.nan
    area = sum((steps[i + 1] - steps[i]) * (values[i] + values[i + 1]) / 2 for i in range(len(steps) - 1))
    return area / (steps[-1] - steps[0])


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def summarise(jobs: list[Job]) -> dict[str, Any]:
    table: dict[str, dict[str, Any]] = {}
    for job in jobs:
        rows = read_metrics(job.run_dir)
        entry = table.setdefault(job.env, {}).setdefault(job.impl, {"runs": {}})
        if not rows or int(rows[-1]["env_step"]) != job.total_steps:
            continue
        steps = [r["env_step"] for r in rows]
        values = [r["eval_return_mean"] for r in rows]
        entry["runs"][job.seed] = {
            "final": values[-1],
            "auc": run_auc(steps, values),
            "wall_minutes": rows[-1]["wall_time"] / 60,
            "eval_steps": steps,
            "eval_returns": values,
        }
    for tasks in table.values():
        for entry in tasks.values():
            runs = list(entry["runs"].values())
            entry["seeds"] = sorted(entry["runs"])
            entry["final_mean"], entry["final_std"] = mean_std([r["final"] for r in runs])
            entry["auc_mean"], entry["auc_std"] = mean_std([r["auc"] for r in runs])
            entry["wall_minutes_mean"] = mean_std([r["wall_minutes"] for r in runs])[0]
    return table


def improvements(table: dict[str, Any], reps: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Per task and algorithm with finished runs of both: P(an ace-rl run ends above an SB3 run), rliable's
    probability of improvement on the final returns with its 95 % stratified-bootstrap interval, computed as
    `ace-rl report` does (same repetitions and seed). The report pairs only its leading algorithm with the
    others, so with SAC and TD3 in one report it would leave TD3 against SB3's TD3 out."""
    import numpy as np

    from ace_rl.report.stats import improvement_estimate

    found = []
    for task, entries in table.items():
        for algo in ("sac", "td3"):
            ours, theirs = entries.get(algo, {}).get("runs"), entries.get(f"sb3-{algo}", {}).get("runs")
            if not ours or not theirs:
                continue
            finals_ours = np.array([[run["final"]] for run in ours.values()])
            finals_theirs = np.array([[run["final"]] for run in theirs.values()])
            estimate = improvement_estimate(finals_ours, finals_theirs, reps, seed)
            found.append(
                {
                    "task": task,
                    "algo": algo,
                    "runs": [len(ours), len(theirs)],
                    "p_ace_rl_above_sb3": estimate.value,
                    "ci95": [estimate.low, estimate.high],
                }
            )
    return found


def print_improvements(found: list[dict[str, Any]]) -> None:
    print("\nP(an ace-rl run ends above an SB3 run), final return [95 % CI]:\n")
    for entry in found:
        low, high = entry["ci95"]
        print(
            f"- {entry['task']}, {entry['algo'].upper()} ({entry['runs'][0]} / {entry['runs'][1]} runs): "
            f"{entry['p_ace_rl_above_sb3']:.2f} [{low:.2f}, {high:.2f}]"
        )


def print_table(table: dict[str, Any], total_steps: int) -> None:
    print(
        f"\nFinal evaluation return at env step {total_steps:,} and AUC (mean height of the evaluation curve), "
        "mean +- std over seeds:\n"
    )
    print("| task | implementation | seeds | final return | AUC | minutes per run |")
    print("|---|---|---|---|---|---|")
    names = {"sac": "ace-rl SAC", "td3": "ace-rl TD3", "sb3-sac": "SB3 SAC", "sb3-td3": "SB3 TD3"}
    for task, entries in table.items():
        for impl in IMPLEMENTATIONS:
            if impl not in entries:
                continue
            e = entries[impl]
            print(
                f"| {task} | {names[impl]} | {len(e['seeds'])} | {e['final_mean']:.1f} +- {e['final_std']:.1f} | "
                f"{e['auc_mean']:.1f} +- {e['auc_std']:.1f} | {e['wall_minutes_mean']:.1f} |"
            )


def config_differences(jobs: list[Job]) -> list[str]:
    """Settings in which an SB3 run's config.json differs from the ace-rl run of the same task and seed."""
    ignored = {"algo", "run_dir", "progress"}
    found = set()
    for job in jobs:
        if not job.is_sb3:
            continue
        ours = job.run_dir / "config.json"
        theirs = (
            job.out
            / Job(
                job.env,
                job.impl.removeprefix("sb3-"),
                job.seed,
                job.total_steps,
                job.overrides,
                job.sb3_warmup,
                job.out,
            ).name
            / "config.json"
        )
        if not (ours.is_file() and theirs.is_file()):
            continue
        a, b = json.loads(ours.read_text()), json.loads(theirs.read_text())
        for key in sorted(set(a) | set(b)):
            if key not in ignored and a.get(key) != b.get(key):
                found.add(f"{job.impl} {key}: {a.get(key)!r} (ace-rl {b.get(key)!r})")
    return sorted(found)


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5", "HalfCheetah-v5"], help="in the order they run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=50_000, help="env steps per run")
    parser.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--workers", type=int, default=2, help="runs at a time, each one process with 1 thread")
    parser.add_argument("--start-steps", type=int, help="random steps (default: the small preset's 5,000)")
    parser.add_argument("--eval-every", type=int, help="default: the small preset's 5,000")
    parser.add_argument("--eval-episodes", type=int, help="default: ace-rl's 10")
    parser.add_argument("--sb3-warmup", choices=("ace", "sb3"), default="ace", help="see the module docstring")
    parser.add_argument("--ace-rl-source", help="import ace_rl from this checkout (e.g. a git worktree)")
    parser.add_argument("--out", type=Path, help="run directories (default: benchmarks/results/sb3_baselines)")
    parser.add_argument("--json", type=Path, help="result (default: benchmarks/results/sb3_baselines.json)")
    parser.add_argument(
        "--report-out", type=Path, help="ace-rl report (default: benchmarks/results/sb3_baselines_report)"
    )
    parser.add_argument("--no-report", action="store_true", help="skip ace-rl report")
    parser.add_argument(
        "--finish-by",
        type=finish_time,
        help="HH:MM (local time, the next such time): start no run expected to end after it, judged by the "
        "finished runs' wall times; exits 75 when runs were left for a later invocation",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a check: Hopper-v5, seed 0, 2,000 steps, 1,000 random steps, evaluation every 1,000 "
        "steps with 3 episodes, into *_quick outputs",
    )
    parser.add_argument("--sb3-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_ace_rl_source(args.ace_rl_source or os.environ.get("ACE_RL_SOURCE"))
    if args.sb3_worker:
        sb3_worker(json.loads(args.sb3_worker))
        return

    suffix = "_quick" if args.quick else ""
    if args.quick:
        args.envs, args.seeds, args.steps = ["Hopper-v5"], [0], 2_000
        args.start_steps, args.eval_every, args.eval_episodes = 1_000, 1_000, 3
    out = (args.out or RESULTS / f"sb3_baselines{suffix}").resolve()
    json_path = args.json or RESULTS / f"sb3_baselines{suffix}.json"
    report_out = args.report_out or RESULTS / f"sb3_baselines{suffix}_report"
    overrides = tuple(
        (name, value)
        for name, value in (
            ("start_steps", args.start_steps),
            ("eval_every", args.eval_every),
            ("eval_episodes", args.eval_episodes),
        )
        if value is not None
    )
    jobs = [
        Job(env, impl, seed, args.steps, overrides, args.sb3_warmup, out)
        for env in args.envs
        for seed in args.seeds
        for impl in args.impls
    ]
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(args)
    runner.jobs = jobs
    runner.remaining = [job for job in jobs if run_state(job) != "done"]
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ace_rl, stable_baselines3, torch; print(ace_rl.__file__, "
            "stable_baselines3.__version__, torch.__version__)",
        ],
        env=runner.environment(),
        cwd=out,
        capture_output=True,
        text=True,
    )
    # ace_rl as the runs import it (ACE_RL_RUNNER and the SB3 worker remove the editable hook first)
    source = args.ace_rl_source or os.environ.get("ACE_RL_SOURCE") or "the installed ace-rl"
    log(
        f"{len(jobs)} runs planned, {len(jobs) - len(runner.remaining)} already done; ace_rl from {source}; "
        f"sb3/torch: {probe.stdout.split()[1:] if probe.returncode == 0 else probe.stderr.strip()[-300:]}; "
        f"{args.workers} workers; out {out}"
    )
    log(WARMUP_NOTES[args.sb3_warmup])
    started = time.time()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for future in [pool.submit(runner.run, job) for job in jobs]:
            future.result()
    if runner.failures and (runner.stopping or runner.not_started):  # listed here too, not only where they happened
        log("failed runs:\n" + "\n".join(runner.failures))
    if runner.stopping:
        log("stopped")
        sys.exit(130)
    if runner.not_started:
        log(
            f"{len(runner.not_started)} runs left for later (--finish-by): {', '.join(runner.not_started)}; "
            "start the command again to continue"
        )
        sys.exit(75)

    table = summarise(jobs)
    print_table(table, args.steps)
    improvement = improvements(table)
    print_improvements(improvement)
    differences = config_differences(jobs)
    print("\nSettings not matched:\n" + "\n".join(f"- {line}" for line in [*UNMATCHED, WARMUP_NOTES[args.sb3_warmup]]))
    print("\nconfig.json differences, SB3 runs vs ace-rl runs:\n" + "\n".join(f"- {line}" for line in differences))
    report_error = None
    if not args.no_report:
        # the runs of this command only (others under --out, another task's still going, stay out), named
        # relative to --out, the report's working directory, so that its summary holds no machine's paths
        run_dirs = [job.name for job in jobs]
        command = [sys.executable, "-c", ACE_RL_RUNNER, "report", *run_dirs, "--out", str(report_out.resolve())]
        done = subprocess.run(command, env=runner.environment(), cwd=out, capture_output=True, text=True)
        if done.returncode != 0:
            report_error = (done.stderr or done.stdout).strip()[-2000:]
            log(f"ace-rl report failed: {report_error}")
        else:
            log(f"ace-rl report written to {report_out}")
    result = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "envs": args.envs,
        "seeds": args.seeds,
        "total_steps": args.steps,
        "workers": args.workers,
        "overrides": dict(overrides),
        "sb3_warmup": args.sb3_warmup,
        "ace_rl_source": source,
        "versions": probe.stdout.split()[1:] if probe.returncode == 0 else None,
        "wall_minutes_this_invocation": (time.time() - started) / 60,
        "unmatched": [*UNMATCHED, WARMUP_NOTES[args.sb3_warmup]],
        "config_differences": differences,
        "failures": runner.failures,
        "report": None if args.no_report else str(report_out),
        "report_error": report_error,
        "results": table,
        "probability_of_improvement": improvement,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(json_path, result)
    log(f"wrote {json_path}")
    if runner.failures:
        log("failed runs:\n" + "\n".join(runner.failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
