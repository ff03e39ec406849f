"""`ace-rl sweep` under faults of its disk and of Ray, each made for real: a tmpfs holding the sweep filled to the
last byte, a driver killed with SIGKILL, a `ray start --head` cluster whose processes are killed mid-sweep, and
addresses where no cluster answers or one that asks for its authentication token."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ace_rl.sweep import CLUSTER_FAULT_SECONDS, EMBEDDED_SESSION_PREFIX
from ace_rl.sweep.cluster import end_session
from test_run_safety import fill_to_last_byte, tmpfs, wait_for
from test_sweep import ENV, TINY, ace_rl_command, complete_states, needs_sweep_extra

pytestmark = needs_sweep_extra


def tiny(total_steps: int) -> list[str]:
    """test_sweep's tiny runs, made longer so that a fault can strike mid-run."""
    options = list(TINY)
    options[options.index("--total-steps") + 1] = str(total_steps)
    return options


GRID = ["--env", ENV, "--algo", "sac", "--seed", "0-1"]
RUNS = [f"{ENV}__sac__s0", f"{ENV}__sac__s1"]


@contextmanager
def short_temp_dir() -> Iterator[Path]:
    """A temporary directory with a short path: Ray's socket paths under it must stay below 108 characters."""
    path = Path(tempfile.mkdtemp(prefix="a", dir="/tmp"))
    try:
        yield path
    finally:
        kill_holders(path)
        shutil.rmtree(path, ignore_errors=True)


def holders(directory: Path) -> set[int]:
    """The processes with a file under ``directory`` open (Ray's processes keep their logs in their session)."""
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if any(os.readlink(fd).startswith(f"{directory}/") for fd in (entry / "fd").iterdir()):
                found.add(int(entry.name))
        except OSError:
            continue
    found.discard(os.getpid())
    return found


def kill_holders(directory: Path, spare: int | None = None) -> None:
    for pid in holders(directory) - {spare}:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def sweep(out: Path, *options: str, env: dict[str, str], alone: bool = False) -> subprocess.Popen:
    """`ace-rl sweep` on GRID; ``alone``: in a PID namespace of its own, where it sees no Ray process of this machine
    (`--address auto` connects to any it sees)."""
    isolation = ["unshare", "--pid", "--fork", "--mount-proc"] if alone else []
    return subprocess.Popen(
        [*isolation, *ace_rl_command("sweep", "--out", str(out), *GRID, *options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def stderr_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def status_runs(out: Path) -> dict:
    return json.loads((out / "sweep_status.json").read_text())["runs"]


FORKING_HOLDER = """
import os, sys, time
log = open(os.path.join(sys.argv[1], "raylet.out"), "w")  # held open, as Ray's processes hold their logs
print("ready", flush=True)
while True:  # a raylet starting workers: each child inherits the open log
    if os.fork() == 0:
        time.sleep(120)
        os._exit(0)
    time.sleep(0.005)
"""


def test_ending_a_session_leaves_no_process_holding_it_even_one_that_forks_holders(tmp_path: Path):
    """Processes SIGKILLed exit asynchronously, and one may fork a holder after a scan passed it: when
    end_session returns, no process holds a file of the session and the directory is gone."""
    session = tmp_path / f"{EMBEDDED_SESSION_PREFIX}1-x"
    session.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", FORKING_HOLDER, str(session)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        wait_for(lambda: len(holders(session)) >= 20, timeout=30, what="the holder to fork 20 children")
        end_session(session)
        assert not holders(session)
        assert not session.exists()
        assert holder.wait(timeout=5) == -signal.SIGKILL
    finally:
        kill_holders(session)
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------------------------------------------
# Ray started by the sweep: a killed driver's leftovers, a full disk, no noise
# ------------------------------------------------------------------------------------------------------------------
def test_a_full_disk_fails_the_runs_with_its_cause_and_a_killed_drivers_ray_is_cleaned_up(tmp_path: Path):
    with short_temp_dir() as temp, tmpfs(tmp_path / "disk", "16m") as disk:
        env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        env["TMPDIR"] = str(temp)  # where the sweep's own Ray keeps its session
        out = disk / "grid"
        options = tiny(1200)

        # A driver killed with SIGKILL leaves its Ray's session behind ...
        first = sweep(out, *options, env=env)
        try:
            wait_for(
                lambda: all(complete_states(out / run) for run in RUNS), timeout=240, what="both runs to checkpoint"
            )
        finally:
            first.kill()
            first.communicate()
        sessions = list(temp.glob(f"{EMBEDDED_SESSION_PREFIX}{first.pid}-*"))
        assert len(sessions) == 1, list(temp.iterdir())
        checkpointed = {run: complete_states(out / run)[-1] for run in RUNS}

        # ... which the next sweep ends and removes. Its runs continue, until the disk is full.
        second = sweep(out, *options, env=env)
        try:
            wait_for(lambda: not sessions[0].exists(), timeout=120, what="the killed driver's Ray session to go")
            assert not holders(sessions[0])  # and no process of it is left
            wait_for(
                lambda: all(complete_states(out / run)[-1] > checkpointed[run] for run in RUNS),
                timeout=240,
                what="both runs to checkpoint again",
            )
            kept = {run: complete_states(out / run) for run in RUNS}
            fill_to_last_byte(disk)
            _stdout, stderr = second.communicate(timeout=150)  # before: every run waited 600 s for a full disk
        finally:
            if second.poll() is None:
                second.kill()
        assert second.returncode == 1, stderr
        lines = stderr_lines(stderr)
        assert "Traceback" not in stderr, stderr
        assert lines[-1].startswith("ace-rl: error: 2 of 2 runs failed"), stderr
        assert len([line for line in lines if line.startswith("ace-rl: warning:")]) <= 1, stderr
        assert all(line.startswith("ace-rl: warning: ") for line in lines[:-1] if line.startswith("ace-rl:")), stderr
        records = status_runs(out)  # written in the end, in the room of the previous one
        assert sorted(records) == RUNS
        for record in records.values():
            assert record["state"] == "failed" and "No space left on device" in record["error"], record
        assert not list(out.rglob("*.tmp"))
        for run in RUNS:
            assert complete_states(out / run)[: len(kept[run])] == kept[run]  # earlier checkpoints intact

        # Room again: the failed runs continue from their checkpoints.
        (disk / "filler").unlink()
        third = sweep(out, *options, "--retry-failed", env=env)
        _stdout, stderr = third.communicate(timeout=400)
        assert third.returncode == 0, stderr
        assert all(line.startswith(("ace-rl: ", f"sweep {out}: ")) for line in stderr_lines(stderr)), (
            stderr
        )  # quiet Ray
        for run in RUNS:
            assert (out / run / "checkpoints" / "final.pt").is_file()
            assert "resuming from" in (out / "logs" / f"{run}.log").read_text()
        assert status_runs(out) == {}
        assert not list(temp.glob(f"{EMBEDDED_SESSION_PREFIX}*"))  # each sweep removes its Ray's session
        assert not (temp / "ray").exists()  # and Ray wrote nothing to its default place


# ------------------------------------------------------------------------------------------------------------------
# A cluster started with `ray start --head`
# ------------------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def ray_head(port: int, client_port: int, num_gpus: int = 0, env: dict[str, str] | None = None) -> Iterator[Path]:
    """A real Ray head on this machine (token authentication: Ray's default), with its Ray Client server; it declares
    ``num_gpus`` GPUs, whether or not the machine has them (Ray then accounts for them as for real ones). ``env``:
    the environment `ray start` runs in, which its workers inherit (default: this one's, without Ray's address)."""
    with short_temp_dir() as temp:
        started = subprocess.run(
            [
                os.path.join(os.path.dirname(sys.executable), "ray"),
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(port),
                "--ray-client-server-port",
                str(client_port),
                "--temp-dir",
                str(temp),
                "--num-cpus",
                "2",
                "--num-gpus",
                str(num_gpus),
                "--include-dashboard",
                "false",
                "--disable-usage-stats",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            env=env
            if env is not None
            else {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE")},
        )
        assert started.returncode == 0, started.stdout + started.stderr
        yield temp  # killing what holds files under it stops the head (short_temp_dir does)


def test_cluster_faults_are_one_line_within_the_bound_and_a_lost_clusters_runs_continue(tmp_path: Path):
    port, client_port, dead_port = free_port(), free_port(), free_port()
    plain = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    no_cluster, stale_cluster = tmp_path / "no-cluster", tmp_path / "stale-cluster"
    no_cluster.mkdir()
    (stale_cluster / "ray").mkdir(parents=True)
    (stale_cluster / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{dead_port}\n")  # left by a cluster gone
    with ray_head(port, client_port) as head:
        faults = {
            "auto, no cluster": (
                ["--address", "auto"],
                {"TMPDIR": str(no_cluster)},
                "no Ray cluster runs on this machine",
            ),
            "auto, stale": (
                ["--address", "auto"],
                {"TMPDIR": str(stale_cluster)},
                f":{dead_port}, recorded by `ray start` on this machine): no Ray cluster answers",
            ),
            "unreachable": (["--address", "127.0.0.1:1"], {}, "no Ray cluster answers at 127.0.0.1:1"),
            "no token": (
                ["--address", f"127.0.0.1:{port}"],
                {},
                "asks for its authentication token; set RAY_AUTH_MODE=token",
            ),
            "client, no token": (["--address", f"ray://127.0.0.1:{client_port}"], {}, "set RAY_AUTH_MODE=token"),
        }
        processes = {
            name: sweep(
                tmp_path / name.replace(" ", "-"), *address, *TINY, env={**plain, **extra}, alone="auto" in address
            )
            for name, (address, extra, _) in faults.items()
        }
        # Each command creates its --out just before it joins the cluster and removes it when refused: the time in
        # between is what the bound is about (the start-up before it is the task's check and five imports on 2 cores).
        joining: dict[str, float] = {}
        ended: dict[str, float] = {}
        deadline = time.monotonic() + 300
        while len(ended) < len(processes):
            assert time.monotonic() < deadline, f"still running: {set(processes) - set(ended)}"
            for name, process in processes.items():
                if name not in joining and (tmp_path / name.replace(" ", "-")).exists():
                    joining[name] = time.monotonic()
                if name not in ended and process.poll() is not None:
                    ended[name] = time.monotonic()
            time.sleep(0.05)
        for name, process in processes.items():
            _, stderr = process.communicate()
            assert process.returncode == 2, (name, stderr)
            lines = stderr_lines(stderr)
            assert (
                len(lines) == 1 and lines[0].startswith("ace-rl: error: --address ") and faults[name][2] in lines[0]
            ), (name, stderr)
            assert ended[name] - joining.get(name, ended[name]) < CLUSTER_FAULT_SECONDS, (
                name,
                ended[name] - joining[name],
            )
            assert not (tmp_path / name.replace(" ", "-")).exists()

        # The head dies mid-sweep (every process of it killed): the runs are left to continue, none failed.
        out = tmp_path / "grid"
        command = ["--address", f"127.0.0.1:{port}", *tiny(1500)]
        joined = {**plain, "RAY_AUTH_MODE": "token"}
        running = sweep(out, *command, env=joined)
        try:
            wait_for(
                lambda: all(complete_states(out / run) for run in RUNS), timeout=240, what="both runs to checkpoint"
            )
            killed_at = time.monotonic()
            kill_holders(head, spare=running.pid)  # the driver too keeps its log there
            _, stderr = running.communicate(timeout=120)  # before: about 70 s, then Ray aborted the driver
            stopped_after = time.monotonic() - killed_at
        finally:
            if running.poll() is None:
                running.kill()
    assert stopped_after < CLUSTER_FAULT_SECONDS, stopped_after
    assert running.returncode == 1, stderr
    assert all(line.startswith(("ace-rl: ", f"sweep {out}: ")) for line in stderr_lines(stderr)), (
        stderr
    )  # nothing of Ray's
    last = stderr_lines(stderr)[-1]
    assert (
        last.startswith("ace-rl: error: lost the Ray cluster (")
        and "with 2 runs unfinished, none of them failed" in last
    ), stderr
    assert last.endswith(
        f"continue them once the cluster is back with: ace-rl sweep --out {out} --address 127.0.0.1:{port}"
    ), last
    assert status_runs(out) == {}  # neither failed nor running
    assert not any((out / run / "checkpoints" / "final.pt").exists() for run in RUNS)

    # A new cluster at the same address: the same command finishes the runs from their checkpoints.
    with ray_head(port, client_port):
        again = sweep(out, *command, env=joined)
        _, stderr = again.communicate(timeout=400)
    assert again.returncode == 0, stderr
    for run in RUNS:
        assert (out / run / "checkpoints" / "final.pt").is_file()
        assert "resuming from" in (out / "logs" / f"{run}.log").read_text()
    assert status_runs(out) == {}


LAB_DRIVER_ONLY = """
import os

if "LAB_DRIVER" not in os.environ:
    raise ImportError("lab_driver_only needs LAB_DRIVER, which only the sweep's command sets")

import lab_reach  # noqa: F401 - registers PointReach-v0
"""


def test_a_user_module_reaches_the_workers_of_a_ray_start_cluster_without_its_pythonpath(tmp_path: Path):
    """The workers of a `ray start` cluster take their environment from `ray start`: a task module on the sweep
    command's PYTHONPATH alone is shipped to them, and a module that imports on the driver but not on a node is
    the sweep's one line before any run starts."""
    repo = Path(__file__).resolve().parent.parent
    lab = tmp_path / "lab"  # named only by the sweep command's PYTHONPATH
    lab.mkdir()
    shutil.copy(repo / "examples" / "point_reach.py", lab / "lab_reach.py")
    (lab / "lab_driver_only.py").write_text(LAB_DRIVER_ONLY)
    plain = {
        key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "PYTHONPATH")
    }
    # The cluster's nodes have ace-rl installed (this checkout), and nothing of lab.
    node_env = {**plain, "PYTHONPATH": str(repo)}
    driver_env = {
        **plain,
        "PYTHONPATH": os.pathsep.join([str(repo), str(lab)]),
        "RAY_AUTH_MODE": "token",
        "LAB_DRIVER": "1",
    }
    port, client_port = free_port(), free_port()
    out, refused = tmp_path / "grid", tmp_path / "refused"
    runs = ["lab_reach_PointReach-v0__sac__s0", "lab_reach_PointReach-v0__sac__s1"]
    with ray_head(port, client_port, env=node_env):
        address = ["--address", f"127.0.0.1:{port}"]
        grid = ["--env", "lab_reach:PointReach-v0", "--algo", "sac", "--seed", "0-1", "--max-concurrent", "1", *TINY]
        done = subprocess.run(
            ace_rl_command("sweep", "--out", str(out), *address, *grid),
            capture_output=True,
            text=True,
            timeout=500,
            env=driver_env,
        )
        failing = subprocess.run(
            ace_rl_command("sweep", "--out", str(refused), *address, "--env", "lab_driver_only:PointReach-v0", *TINY),
            capture_output=True,
            text=True,
            timeout=300,
            env=driver_env,
        )
    assert done.returncode == 0, done.stderr
    assert all(line.startswith(("ace-rl: ", f"sweep {out}: ")) for line in stderr_lines(done.stderr)), done.stderr
    assert sorted(path.name for path in out.iterdir() if "__" in path.name) == runs
    for run in runs:
        assert (out / run / "checkpoints" / "final.pt").is_file()
    assert json.loads((out / "sweep.json").read_text())["resources"]["max_concurrent"] == 1
    # --max-concurrent 1: the second run started after the first was done.
    spans = sorted(
        (lines[0].split()[1], lines[-1].split()[-1])
        for lines in ((out / "logs" / f"{run}.log").read_text().splitlines() for run in runs)
    )
    assert spans[0][1] <= spans[1][0], spans
    assert failing.returncode == 2, failing.stderr
    (line,) = stderr_lines(failing.stderr)
    assert line.startswith("ace-rl: error: module lab_driver_only does not import on node "), line
    assert "lab_driver_only needs LAB_DRIVER" in line and str(lab / "lab_driver_only.py") in line, line
    assert not refused.exists()
