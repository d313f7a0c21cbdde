"""Working folders of private instances (RabbitMQ nodes, PostgreSQL servers), and their cleanup.

Each instance claims a folder ``<base>/<kind>/<name>`` with an owner file beside it naming the
process that made it (pid and start time, so a reused pid is not mistaken for the owner). Three
layers make sure no instance outlives its test:

1. the instance's own ``destroy()``, called from ``finally`` / ``__exit__`` / fixture teardown;
2. a watchdog process per instance, in its own session (Ctrl-C does not reach it), which waits for
   the owner to die and then cleans up: this covers ``kill -9`` of pytest and a second Ctrl-C;
3. every claim first reaps the folders whose owner is dead (leftovers of a killed run whose
   watchdog was killed too).

Run as a module, this file is that watchdog: ``python -m tests.faults.workdir <pid> <start> <kind>
<folder>``.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

BASE = Path(os.environ.get("NUVEM_FAULTS_DIR", "/tmp/nuvem-ledger-faults"))
REPO_ROOT = Path(__file__).resolve().parents[2]

# What cleans up a folder of each kind (``module:function``, called with the folder's path).
CLEANUPS = {
    "rabbit": "tests.faults.broker:cleanup_folder",
    "postgres": "tests.faults.postgres:cleanup_folder",
}

# Ports of the shared services and of the cluster (deploy/cluster), never handed out.
RESERVED_PORTS = frozenset(
    {4369, 5432, 5672, 15672, 15692, 25672, 35672}
    | set(range(5701, 5704))
    | set(range(15701, 15704))
    | set(range(25701, 25704))
)
# Below the kernel's ephemeral range (32768-60999 here): an outgoing connection never takes one of
# these ports between a node's stop and its start, so a restarted node gets its port back.
PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, outside the ephemeral range, not handed out before."""
    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        if port in RESERVED_PORTS or port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port found in {PORT_RANGE}")


def start_time(pid: int) -> str | None:
    """The kernel's start time of a process (clock ticks since boot), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int, started: str) -> bool:
    return start_time(pid) == started


def _owner_file(folder: Path) -> Path:
    return folder.with_name(folder.name + ".owner")


def _owner_alive(folder: Path) -> bool:
    try:
        pid, started = _owner_file(folder).read_text().split()
    except (OSError, ValueError):
        return False
    return alive(int(pid), started)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    with (root / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cleanup(kind: str, folder: Path) -> None:
    """Stop whatever runs from ``folder`` and remove it (and its owner file)."""
    module, function = CLEANUPS[kind].split(":")
    stop: Callable[[Path], None] = getattr(importlib.import_module(module), function)
    with suppress(Exception):
        stop(folder)
    shutil.rmtree(folder, ignore_errors=True)
    _owner_file(folder).unlink(missing_ok=True)


def reap(kind: str) -> list[str]:
    """Clean up every folder of ``kind`` whose owner is dead; the names reaped."""
    root = BASE / kind
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        return _reap_locked(kind, root)


def _reap_locked(kind: str, root: Path) -> list[str]:
    reaped = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not _owner_alive(entry):
            cleanup(kind, entry)
            reaped.append(entry.name)
    return reaped


def claim(kind: str, prefix: str, taken: Callable[[str], bool] = lambda _: False) -> Path:
    """Reap dead owners' folders, then create ``<base>/<kind>/<prefix><n>`` for this process.

    ``n`` is the smallest number whose folder does not exist and whose name ``taken`` says is
    free (e.g. not registered with epmd).
    """
    root = BASE / kind
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(BASE, 0o755)
    os.chmod(root, 0o755)
    with _locked(root):
        _reap_locked(kind, root)
        number = 1
        while True:
            folder = root / f"{prefix}{number}"
            if not folder.exists() and not taken(folder.name):
                folder.mkdir()
                me = os.getpid()
                _owner_file(folder).write_text(f"{me} {start_time(me)}\n")
                return folder
            number += 1


def start_watchdog(kind: str, folder: Path) -> subprocess.Popen[bytes]:
    """A process that cleans ``folder`` up as soon as this process dies, however it dies."""
    me = os.getpid()
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.faults.workdir",
            str(me),
            str(start_time(me)),
            kind,
            str(folder),
        ],
        cwd=REPO_ROOT,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    if watchdog is None or watchdog.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(watchdog.pid, signal.SIGKILL)
    watchdog.wait(timeout=10)


def run(
    argv: list[str],
    *,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; a failure raises with the command and its output.

    ``user`` runs it as that OS user, with that user's group and no supplementary groups.
    """
    group = pwd.getpwnam(user).pw_gid if user is not None else None
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        user=user,
        group=group,
        extra_groups=[] if user is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}: {(done.stdout + done.stderr).strip()[-2000:]}"
        )
    return done


def _watch(owner: int, started: str, kind: str, folder: Path) -> None:
    while alive(owner, started) and folder.exists():
        time.sleep(1)
    # The folder may have been reaped and claimed again by a new owner meanwhile: leave it then.
    with _locked(folder.parent), suppress(OSError):
        if _owner_file(folder).read_text().split() == [str(owner), started]:
            cleanup(kind, folder)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]))
