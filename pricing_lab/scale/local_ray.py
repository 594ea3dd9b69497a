"""A private one-machine Ray for a `RayExecutor` given no cluster address, one that starts on a
loaded machine.

Why not `ray.init()`: the node it starts has its raylet wait a fixed 15 seconds (not
configurable in Ray 2.60: `agent_register_timeout_ms` does not apply) for the dashboard agent and
the runtime-env agent to write their port files. Each agent is a Python process importing Ray —
several CPU-seconds (its `jsonschema` builds ~35 IRI parsers at import; more without compiled
bytecode) — started together with one worker per CPU. On a 2-core machine busy with other jobs
they miss the 15 seconds, the raylet aborts ("Timed out waiting for file …/metrics_agent_port_…"
in its log) and `ray.init` says only "The current node timed out during startup"
(ray-project/ray#65983). Given the agents' ports, the raylet skips waiting for all but one
(the dashboard agent's HTTP port, which Ray's launcher does not pass on to the raylet), and with
fewer processes starting at once the agent writes that one in time.

So `start_local_ray` runs `ray start --head --block` as a child process with ports chosen here,
in a short temporary folder of its own (Unix socket paths are limited to 107 bytes; not the
shared `/tmp/ray`), with the interpreter of this process (the project's virtual environment, for
the workers too), workers started when tasks come rather than together with the agents, and a
generous worker registration timeout (a worker imports the engine's libraries before it
registers). A node that does not start is tried once more. `LocalRay.stop` ends it: `ray start`
drains and stops every process it started; it does the same by itself if this process dies (it
watches its stdin, a pipe from this process).

The node is for one machine's work (development, CI, one big machine): it runs without Ray's
token authentication (the token would have to be put in this process's environment) and Ray
listens on every interface, so on a shared network run a cluster and pass its address.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pricing_lab.errors import PricingLabError

LOOPBACK = "127.0.0.1"
STARTUP_SECONDS = 120.0  # per attempt; a loaded 2-core machine has been seen to need ~30 s
ATTEMPTS = 2
WORKER_REGISTER_SECONDS = 300
_READY = "Ray runtime started"
# `ray start`, ended by SIGTERM (which it handles by draining and stopping its processes) when
# its stdin closes: when `LocalRay.stop` closes it or when the process that started it is gone.
_LAUNCHER = """
import os, signal, sys, threading
def _watch():
    sys.stdin.read()
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=_watch, daemon=True).start()
from ray.scripts.scripts import main
sys.argv = ["ray", *sys.argv[1:]]
main()
"""


class LocalRayFailed(PricingLabError):
    """The private local Ray did not start."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalRay:
    """A running private Ray node: its address, its `ray start` process and folder."""

    address: str
    process: subprocess.Popen[bytes]
    folder: Path

    def connect(self) -> None:
        """Make this process a Ray driver of the node (`ray.init`).

        Ray's `uv run` hook is off while it connects: under `uv run` (as `make test` runs)
        Ray would start the workers with `uv run … python` in an uploaded copy of the current
        folder, which has no `.venv` (git-ignored), so they would start in an empty environment
        and never register. The node's workers already use this interpreter and get this
        folder on their path. Ray's own INFO lines ("Connecting to existing Ray cluster …") are
        left out of the command's stderr; its warnings and errors are not."""
        import ray
        from ray._private import ray_constants

        hook = getattr(ray_constants, "RAY_ENABLE_UV_RUN_RUNTIME_ENV", False)
        ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
        finally:
            ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = hook

    def stop(self) -> None:
        """Stop the node (every process `ray start` started) and remove its folder."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_local_ray(
    num_cpus: int, *, timeout: float = STARTUP_SECONDS, attempts: int = ATTEMPTS
) -> LocalRay:
    """Start a private Ray node with `num_cpus` CPUs; returns once it accepts drivers. A node
    that does not start is tried again, `attempts` times in all; then `LocalRayFailed` says
    why, with the end of Ray's log."""
    for attempt in range(1, attempts + 1):
        try:
            return _start(num_cpus, timeout)
        except LocalRayFailed:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _start(num_cpus: int, timeout: float) -> LocalRay:
    folder = Path(tempfile.mkdtemp(prefix="plray-", dir="/tmp"))
    gcs, agent_grpc, agent_http, metrics, runtime_env = _free_ports(5)
    command = [
        sys.executable,
        "-c",
        _LAUNCHER,
        "start",
        "--head",
        "--block",
        f"--num-cpus={num_cpus}",
        f"--node-ip-address={LOOPBACK}",
        f"--port={gcs}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--dashboard-agent-listen-port={agent_http}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
        "--include-dashboard=false",
        "--include-log-monitor=false",
        "--disable-usage-stats",
        f"--temp-dir={folder}",
    ]
    env = os.environ | {
        # Ray's token authentication would need the token in this process's environment too.
        "RAY_AUTH_MODE": "disabled",
        "RAY_worker_register_timeout_seconds": str(WORKER_REGISTER_SECONDS),
        # Workers start when tasks come, not together with the agents (one per CPU).
        "RAY_enable_worker_prestart": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    log_path = folder / "start.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    node = LocalRay(address=f"{LOOPBACK}:{gcs}", process=process, folder=folder)
    deadline = time.monotonic() + timeout
    while True:
        text = log_path.read_text(errors="replace")
        if _READY in text:
            return node
        if process.poll() is not None or time.monotonic() > deadline:
            raylet = _raylet_failure(folder)
            node.stop()
            tail = raylet or "\n".join(text.strip().splitlines()[-6:])
            why = "exited" if process.returncode is not None else f"not up after {timeout:.0f} s"
            raise LocalRayFailed(f"the local Ray node {why}: {tail}")
        time.sleep(0.25)


def _raylet_failure(folder: Path) -> str:
    """The raylet's fatal log line, if it wrote one (Ray's own error does not name it)."""
    for log in folder.glob("session_*/logs/raylet.out"):
        for line in log.read_text(errors="replace").splitlines():
            if "Check failed" in line:
                return line[line.index("Check failed") :]
    return ""


def _free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on the loopback interface right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
