"""A private RabbitMQ node for tests that break the broker, beside the machine's shared one.

The shared node (``rabbit@localhost``, 127.0.0.1:5672) is never addressed: every command names the
private node with ``-n``. Following /work/shared/CLUSTER.md, a private node has

- its own name (``fault<n>@localhost``), AMQP port, Erlang distribution port and, if asked for,
  management port (the machine's ``/etc/rabbitmq/rabbitmq.conf`` pins the shared listener, so the
  ports go in a ``rabbitmq.conf`` of the node's own);
- its own folder, owned by the ``rabbitmq`` user (the server script switches to that user; a
  folder it cannot write makes the node exit without a word): config, ``enabled_plugins`` (``[].``
  unless management is asked for), data (``mnesia``), logs and pid file;
- ``rabbitmq-server -detached`` with the ``RABBITMQ_*`` variables pointing into that folder, then
  ``rabbitmqctl -n <node> await_startup`` once the node has registered with epmd.

Use it as a context manager (or the ``rabbit_node`` fixture of ``tests/faults/conftest.py``): the
node is stopped and its folder removed on exit, whatever ends the test. See ``workdir`` for the
watchdog and the reaping of a killed run's leftovers. Commands must run as root (they switch to
the ``rabbitmq`` user) or as ``rabbitmq``. Methods are synchronous and each CLI call takes one to
three seconds: from async code, call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from tests.faults import workdir

HOST = "localhost"
SERVER_USER = "rabbitmq"
START_TIMEOUT = 120.0


def epmd_names() -> dict[str, int]:
    """Node short names registered with the local epmd, with their distribution ports."""
    try:
        with socket.create_connection(("127.0.0.1", 4369), timeout=5) as conn:
            conn.sendall(b"\x00\x01n")  # NAMES_REQ
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
    except OSError:
        return {}
    names = {}
    for line in data[4:].decode(errors="replace").splitlines():
        parts = line.split()  # "name <name> at port <port>"
        if len(parts) == 5 and parts[0] == "name":
            names[parts[1]] = int(parts[4])
    return names


def cli_env() -> dict[str, str]:
    """The environment for CLI tools: without any ``RABBITMQ_*`` that could select another node."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}


def rabbitmqctl(
    node: str, *args: str, tool: str = "rabbitmqctl", timeout: float = 120, check: bool = True
) -> str:
    """Run a RabbitMQ CLI tool against ``node`` (always named: never the default node)."""
    if not node or node.startswith("rabbit@"):
        raise ValueError(f"refusing to address {node!r}: only private nodes are ours to command")
    done = workdir.run([tool, "-n", node, *args], timeout=timeout, check=check, env=cli_env())
    return done.stdout


def _marker(folder: Path) -> bytes:
    return f"RABBITMQ_MNESIA_BASE={folder}/mnesia".encode()


def node_processes(folder: Path) -> list[int]:
    """Every process started for the node of ``folder`` (the VM, and the start script while it
    runs): the processes whose environment points into that folder. No pid file needed."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if _marker(folder) in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _node_pid(folder: Path) -> int | None:
    """The VM's pid, if the pid file names a live process of this node."""
    try:
        pid = int((folder / "pid").read_text().strip())
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if _marker(folder) in environ else None


def _wait_gone(folder: Path, timeout: float) -> bool:
    """Wait until no process of the node runs and its name has left epmd."""
    deadline = time.monotonic() + timeout
    while node_processes(folder) or folder.name in epmd_names():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def cleanup_folder(folder: Path) -> None:
    """Stop the node of ``folder`` for good: its data is about to be removed, so SIGKILL does
    (quick, no CLI call); ``rabbitmqctl stop`` only for a registered node with no process found."""
    pids = node_processes(folder)
    if not pids and folder.name in epmd_names():
        rabbitmqctl(f"{folder.name}@{HOST}", "stop", timeout=60, check=False)
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(folder, 10)


class RabbitNode:
    """One private RabbitMQ node; its data survives ``stop_node``/``start_node``."""

    def __init__(self, *, management: bool = False, prefix: str = "fault") -> None:
        self.management = management
        self.prefix = prefix
        self.folder: Path | None = None
        self.name = ""
        self.amqp_port = 0
        self.dist_port = 0
        self.management_port: int | None = None
        self.start_seconds: float | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    # --- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> RabbitNode:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.destroy()

    def start(self) -> float:
        """Create the node's folder and start it; the seconds until it accepted commands.

        A start that fails (or is interrupted) stops what it started and removes the folder.
        """
        if self.folder is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.folder = workdir.claim("rabbit", self.prefix, taken=lambda n: n in epmd_names())
        try:
            self._watchdog = workdir.start_watchdog("rabbit", self.folder)
            self._configure(self.folder)
            return self.start_node()
        except BaseException:
            self.destroy()
            raise

    def _configure(self, folder: Path) -> None:
        """Ports, ``rabbitmq.conf``, ``enabled_plugins`` and sub-folders, owned by rabbitmq."""
        self.name = f"{folder.name}@{HOST}"
        self.amqp_port = workdir.free_port()
        self.dist_port = workdir.free_port()
        config = [f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}"]
        plugins = "[]."
        if self.management:
            self.management_port = workdir.free_port()
            config += [
                "management.tcp.ip = 127.0.0.1",
                f"management.tcp.port = {self.management_port}",
            ]
            plugins = "[rabbitmq_management]."
        (folder / "rabbitmq.conf").write_text("\n".join(config) + "\n")
        (folder / "enabled_plugins").write_text(plugins + "\n")
        for sub in ("mnesia", "log"):
            (folder / sub).mkdir()
        user = pwd.getpwnam(SERVER_USER)
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)

    def destroy(self) -> None:
        """Stop the node and remove its folder. Safe to call twice, or after a failed start."""
        folder, self.folder = self.folder, None
        if folder is not None:
            try:
                workdir.cleanup("rabbit", folder)
            finally:
                workdir.stop_watchdog(self._watchdog)
                self._watchdog = None

    # --- faults ----------------------------------------------------------------------------------

    def start_node(self) -> float:
        """Start the (stopped) node with the data it had; the seconds until ``await_startup``."""
        folder = self._folder()
        began = time.monotonic()
        (folder / "pid").unlink(missing_ok=True)
        workdir.run(["rabbitmq-server", "-detached"], env=self._server_env(), timeout=60)
        deadline = began + START_TIMEOUT
        while folder.name not in epmd_names():
            # No process of the node left (the script has returned): it exited during its boot,
            # e.g. on a configuration error (which -detached leaves unsaid).
            if not node_processes(folder) or time.monotonic() > deadline:
                config = (folder / "rabbitmq.conf").read_text().strip()
                raise RuntimeError(
                    f"{self.name} did not start (config: {config!r}): {self.log_tail()}"
                )
            time.sleep(0.2)
        self.ctl("await_startup", timeout=max(deadline - time.monotonic(), 5))
        self.start_seconds = time.monotonic() - began
        return self.start_seconds

    def stop_node(self) -> None:
        """Stop the whole node (the Erlang VM), keeping its data; returns once the process is gone."""
        folder = self._folder()
        if folder.name in epmd_names():
            self.ctl("stop", str(folder / "pid"))
        if not _wait_gone(folder, 30):
            raise RuntimeError(f"{self.name} did not stop")

    def kill_node(self) -> None:
        """SIGKILL the node's VM: a crash, not a shutdown (data on disk is kept)."""
        pid = _node_pid(self._folder())
        if pid is None:
            raise RuntimeError(f"{self.name} is not running")
        os.kill(pid, signal.SIGKILL)
        _wait_gone(self._folder(), 30)

    def stop_app(self) -> None:
        """Stop the RabbitMQ application: every connection closes, the VM stays up."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")

    def close_all_connections(self, vhost: str | None = None, reason: str = "fault test") -> None:
        """Close every client connection of ``vhost``, or of every vhost when it is None."""
        if vhost is None:
            self.ctl("close_all_connections", "--global", reason)
        else:
            self.ctl("close_all_connections", "-p", vhost, reason)

    # --- set-up and addresses --------------------------------------------------------------------

    def add_vhost(self, vhost: str) -> str:
        """Create ``vhost`` with full permissions for guest; its AMQP URL."""
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return self.amqp_url(vhost)

    def amqp_url(self, vhost: str = "/") -> str:
        path = "" if vhost == "/" else quote(vhost, safe="")
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{path}"

    @property
    def management_url(self) -> str:
        if self.management_port is None:
            raise RuntimeError(f"{self.name} was started without management")
        return f"http://127.0.0.1:{self.management_port}"

    def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 120) -> str:
        """Any CLI command against this node, e.g. ``ctl("list_queues", "name", "messages")``."""
        self._folder()
        return rabbitmqctl(self.name, *args, tool=tool, timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        folder = self._folder()
        log = folder / "log" / f"{self.name}.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {log})"

    def _folder(self) -> Path:
        if self.folder is None:
            raise RuntimeError("the node is not started (or was destroyed)")
        return self.folder

    def _server_env(self) -> dict[str, str]:
        folder = self._folder()
        return cli_env() | {
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(folder / "pid"),
        }
