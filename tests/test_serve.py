"""The web tier's process manager (assistant_site/serve.py): processes started, restarted, stopped."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

from tests import services

ROOT = Path(__file__).resolve().parent.parent


def two_free_ports() -> int:
    """A port p with p and p + 1 both free."""
    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def answers(port: int) -> bool:
    try:
        with urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def test_it_serves_on_each_port_restarts_a_dead_process_and_stops_them_all(tmp_path):
    port = two_free_ports()
    env = services.test_process_env() | {"WEB_PROCESSES": "2", "WEB_PORT": str(port)}
    log = tmp_path / "serve.log"
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "assistant_site.serve"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: answers(port) and answers(port + 1), 60, "both processes answer")
        first = children(supervisor.pid)
        assert len(first) == 2

        victim = first[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in children(supervisor.pid) and len(children(supervisor.pid)) == 2, 20, "restart")
        wait_for(lambda: answers(port) and answers(port + 1), 60, "both answer again")
        assert "exited (code -9)" in log.read_text()

        survivors = children(supervisor.pid)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=40) == 0
        assert not any(is_alive(pid) for pid in survivors)
        assert not answers(port) and not answers(port + 1)
    finally:
        services.stop(supervisor)
