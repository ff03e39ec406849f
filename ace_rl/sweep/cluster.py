"""Ray's life cycle for one `ace-rl sweep`: start Ray on this machine (and clean up after a sweep that was
killed) or join the cluster at --address, refusing one that cannot be reached in one line within
CLUSTER_FAULT_SECONDS; probe its head during the sweep; keep Ray's own output off the terminal; leave it."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, suppress
from pathlib import Path
from typing import Any

from ace_rl.sweep.args import SweepArgs, SweepError

# A Ray cluster that cannot be reached, refuses this driver or is lost mid-sweep ends the command with one line
# within CLUSTER_FAULT_SECONDS (the README states it); the steps below add up to less.
CLUSTER_FAULT_SECONDS = 30.0
CONNECT_SECONDS = 5.0  # --address must accept a connection within this
GCS_CONNECT_ATTEMPTS = 5  # then Ray tries to join it this many times, a second apart (its default: 20)
PROBE_SECONDS = 2.0  # during a sweep the driver checks every PROBE_INTERVAL_SECONDS that the head answers
PROBE_INTERVAL_SECONDS = 2.0
CLUSTER_LOST_SECONDS = 10.0  # a head silent this long is lost (Ray alone waits 60 s, then aborts the driver)
SHUTDOWN_SECONDS = 5.0  # how long leaving a lost cluster may take
SESSION_END_SECONDS = 10.0  # how long killing a killed sweep's Ray processes may take
EMBEDDED_SESSION_PREFIX = (
    "ace-rl-ray-"  # TMPDIR/ace-rl-ray-PID-*: the temporary directory of a Ray started by sweep PID
)
# Ray's own failures, not the run's: a worker or node that died (after Ray's retries), a raylet that died.
INFRASTRUCTURE_ERRORS = (
    "WorkerCrashedError",
    "NodeDiedError",
    "ObjectLostError",
    "LocalRayletDiedError",
    "RaySystemError",
)
# Those that leave this driver without its cluster.
CLUSTER_ERRORS = ("LocalRayletDiedError", "RaySystemError")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def error_line(error: BaseException) -> str:
    """One line for a Ray error: the exception underneath (a worker that died, arguments that failed to load)."""
    cause = getattr(error, "cause", None)
    shown = cause if isinstance(cause, BaseException) else error
    lines = [line.strip() for line in _ANSI_ESCAPE.sub("", str(shown)).splitlines() if line.strip()]
    return f"{type(shown).__name__}: {lines[0] if lines else ''}"


def start_ray(ray: Any, args: SweepArgs, runtime_env: dict[str, Any] | None = None) -> Path | None:
    """Start Ray on this machine, or join the cluster at --address, and check that it can run one run; every task
    of the sweep gets ``runtime_env`` (the user's modules, ace_rl.sweep.modules). Returns the temporary directory
    of a Ray started here (stop_ray removes it). A cluster that cannot be reached is refused in one line within
    CLUSTER_FAULT_SECONDS."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # each run's output goes to DIR/logs/RUN.log
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
    if runtime_env is not None:
        common["runtime_env"] = runtime_env
    # Ray keeps its default, token authentication, but need not say so on every sweep.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    session: Path | None = None
    try:
        if args.address is None:
            remove_stale_sessions()
            session = Path(tempfile.mkdtemp(prefix=f"{EMBEDDED_SESSION_PREFIX}{os.getpid()}-"))
            try:
                # "local": a Ray of its own, even where `ray start` left a cluster on this machine
                ray.init(
                    address="local",
                    num_cpus=os.cpu_count() or 1,
                    include_dashboard=False,
                    object_store_memory=100 * 1024**2,
                    _temp_dir=str(session),
                    **common,
                )
            except Exception as error:  # noqa: BLE001 - Ray raises many kinds; each is one line here
                raise SweepError(f"cannot start Ray on this machine: {error_line(error)}") from None
        else:
            connect(ray, args.address, common)
        check_resources(ray, args)
    except BaseException:
        stop_ray(ray, session)
        raise
    return session


def address_endpoint(address: str) -> tuple[str, int]:
    """The host and port that --address names: auto (the cluster `ray start` recorded on this machine, or
    RAY_ADDRESS), ray://HOST[:PORT] (Ray Client, port 10001 by default) or HOST:PORT."""
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            resolved = canonicalize_bootstrap_address(address, None)
        except ConnectionError:
            resolved = None
        if not resolved:
            raise SweepError(
                "--address auto: no Ray cluster runs on this machine; start one with `ray start --head`, or leave out "
                "--address to run Ray for this sweep only"
            )
        address = resolved
    client = address.startswith("ray://")
    host, _, port = address.removeprefix("ray://").rstrip("/").rpartition(":")
    if client and not port.isdigit():
        host, port = address.removeprefix("ray://").rstrip("/"), "10001"
    if not host or not port.isdigit():
        raise SweepError(f"--address {address} is not HOST:PORT, ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def answers(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts a TCP connection at host:port within timeout seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def connect(ray: Any, address: str, options: dict[str, Any]) -> None:
    """Join the cluster at --address, or refuse in one line within CLUSTER_FAULT_SECONDS (Ray alone retries an
    address that does not answer for minutes)."""
    host, port = address_endpoint(address)
    if not answers(host, port, timeout=CONNECT_SECONDS):
        shown = address if address != "auto" else f"auto ({host}:{port}, recorded by `ray start` on this machine)"
        raise SweepError(
            f"--address {shown}: no Ray cluster answers at {host}:{port} within {CONNECT_SECONDS:g} s; start it "
            "(ray start --head), correct the address, or leave out --address to run Ray on this machine only"
        )
    retries = {
        "RAY_gcs_server_port_wait_time_s": str(GCS_CONNECT_ATTEMPTS),  # seconds of retries
        # Ray Client's three attempts wait 5, 10 and 15 s by default (a refused token included): 2, 5 and 5 here.
        "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "2",
        "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "5",
    }
    retries = {name: value for name, value in retries.items() if name not in os.environ}  # the user's own win
    failure: BaseException | None = None
    with stderr_kept() as ray_output:  # Ray's own lines while it retries a refused connection
        try:
            os.environ.update(retries)  # for this connection only (a Ray started later waits for its GCS as usual)
            ray.init(address=address, **options)
        except Exception as error:  # noqa: BLE001 - Ray raises many kinds; each is one line here
            failure = error
        finally:
            for name in retries:
                os.environ.pop(name, None)
    if failure is not None:
        raise SweepError(connect_error(address, failure, "".join(ray_output))) from None


@contextmanager
def native_stderr_to(path: Path) -> Iterator[None]:
    """What Ray's C++ core writes to file descriptor 2 meanwhile (a lost raylet's failed calls, ...) goes to
    ``path``, and Python's sys.stderr still where it went: the sweep's own lines stay the only ones."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        target = os.open(os.devnull, os.O_WRONLY)
    previous = sys.stderr
    try:
        writes_to_descriptor_2 = previous.fileno() == 2
    except (AttributeError, OSError, ValueError):
        writes_to_descriptor_2 = False
    previous.flush()
    original = os.dup(2)
    python_stderr: io.TextIOWrapper | None = None
    if writes_to_descriptor_2:
        python_stderr = io.TextIOWrapper(
            os.fdopen(os.dup(original), "wb"),
            encoding=previous.encoding,
            errors="backslashreplace",
            line_buffering=True,
        )
        sys.stderr = python_stderr
    os.dup2(target, 2)
    os.close(target)
    try:
        yield
    finally:
        if python_stderr is not None:
            sys.stderr = previous
            with suppress(OSError):
                python_stderr.close()
        os.dup2(original, 2)
        os.close(original)


@contextmanager
def raylet_lines_to(path: Path) -> Iterator[None]:
    """What the cluster reports to this driver meanwhile ("(raylet) A worker died or was killed ...") goes to
    ``path``, without its colours. Ray prints those lines on sys.stdout from a thread of its own (its
    print_to_stdstream, looked up at each call), which native_stderr_to does not catch."""
    from ray._private import worker as ray_worker

    original = getattr(ray_worker, "print_to_stdstream", None)
    lock = threading.Lock()

    def to_log(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        source = data.get("pid", "ray")
        text = "".join(f"({source}) {_ANSI_ESCAPE.sub('', str(line))}\n" for line in data.get("lines", []))
        with lock, suppress(OSError), open(path, "a") as log:
            log.write(text)

    if original is None:  # another Ray than this was written for: its lines stay where Ray puts them
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    ray_worker.print_to_stdstream = to_log
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = original


@contextmanager
def stderr_kept() -> Iterator[list[str]]:
    """What is written to stderr meanwhile, by Python or by Ray's C++ core (file descriptor 2), is kept from the
    terminal; the list yielded holds it after the block."""
    kept_text: list[str] = []
    with tempfile.TemporaryFile() as kept:
        sys.stderr.flush()
        original = os.dup(2)
        python_stderr = io.TextIOWrapper(os.fdopen(os.dup(kept.fileno()), "wb"), write_through=True)
        try:
            os.dup2(kept.fileno(), 2)
            with redirect_stderr(python_stderr):
                yield kept_text
        finally:
            python_stderr.close()
            os.dup2(original, 2)
            os.close(original)
            kept.seek(0)
            kept_text.append(kept.read().decode(errors="replace"))


def connect_error(address: str, error: BaseException, ray_output: str) -> str:
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join([ray_output, *(f"{type(cause).__name__} {cause}" for cause in chain)])
    if "AuthenticationError" in text or "InvalidAuthToken" in text or "Authentication token" in text:
        return (
            f"--address {address}: the Ray cluster asks for its authentication token; set RAY_AUTH_MODE=token and give "
            "its token (`ray get-auth-token` on its head) in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
        )
    if (
        address.startswith("ray://") and "connection timeout" in text
    ):  # Ray Client says no more, a refused token included
        return (
            f"--address {address}: the Ray Client server answers but did not take this driver in; if the cluster uses "
            "token authentication (Ray's default), set RAY_AUTH_MODE=token and give its token (`ray get-auth-token` "
            "on its head) in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
        )
    return f"--address {address}: cannot join the Ray cluster ({error_line(chain[-1])})"


def head_endpoint(ray: Any, address: str | None) -> tuple[str, int] | None:
    """The address of the cluster's head that the driver probes (its GCS; the Ray Client server for ray://)."""
    try:
        if address is not None and address.startswith("ray://"):
            return address_endpoint(address)
        host, _, port = ray.get_runtime_context().gcs_address.rpartition(":")
        return host.strip("[]"), int(port)
    except Exception:  # noqa: BLE001 - without it the driver relies on Ray's errors alone
        return None


def stop_ray(ray: Any, session: Path | None) -> None:
    """Leave the cluster (stopping a Ray started here) and remove the temporary directory of a Ray started here.
    Ray's shutdown may wait on a cluster that was lost: it gets SHUTDOWN_SECONDS."""
    shutdown = threading.Thread(target=ray.shutdown, name="ray.shutdown", daemon=True)
    shutdown.start()
    shutdown.join(SHUTDOWN_SECONDS)
    if session is not None:
        end_session(session)


def remove_stale_sessions() -> None:
    """A Ray started by a sweep that was killed (SIGKILL) leaves processes and its temporary directory: both
    are ended here, where the directory's sweep (named in it) no longer runs."""
    for session in Path(tempfile.gettempdir()).glob(f"{EMBEDDED_SESSION_PREFIX}*"):
        driver = session.name.removeprefix(EMBEDDED_SESSION_PREFIX).split("-")[0]
        if driver.isdigit() and not process_exists(int(driver)):
            end_session(session)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_session(session: Path) -> None:
    """Kill the processes that hold files of a Ray session directory open (its raylet, GCS, agents and workers
    keep their logs there), then remove the directory. SIGKILL takes effect asynchronously and a Ray process may
    fork a worker (inheriting its files) after a scan passed it, so the scan repeats until none is left, for at most
    SESSION_END_SECONDS."""
    deadline = time.monotonic() + SESSION_END_SECONDS
    while (holders := session_holders(session)) and time.monotonic() < deadline:
        for pid in holders:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    shutil.rmtree(session, ignore_errors=True)


def session_holders(session: Path) -> set[int]:
    """The processes, other than this one, with a file under ``session`` open (an exited process holds none)."""
    prefix = f"{session}/"
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        if int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd).startswith(prefix) for fd in (entry / "fd").iterdir()):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def check_resources(ray: Any, args: SweepArgs) -> None:
    """Refuse requests no node can meet (Ray would wait for them forever)."""
    resources = ray.cluster_resources()
    if args.threads_per_run > resources.get("CPU", 0):
        raise SweepError(
            f"--threads-per-run {args.threads_per_run} exceeds the {resources.get('CPU', 0):g} CPUs of the Ray cluster"
        )
    if args.gpus_per_run > resources.get("GPU", 0):
        raise SweepError(
            f"--gpus-per-run {args.gpus_per_run:g} but the Ray cluster has {resources.get('GPU', 0):g} GPUs"
        )
