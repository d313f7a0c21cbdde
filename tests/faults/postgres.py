"""A private PostgreSQL server for tests that crash or restart the database.

The machine's shared server (127.0.0.1:5432) is never touched. A private server is a cluster made
by ``initdb`` (from ``/usr/lib/postgresql/<newest version>/bin``, found at run time) in a folder of
its own owned by the ``postgres`` OS user, with trust authentication, its own port on 127.0.0.1
and its own socket folder, run with ``pg_ctl`` as that user.

Use it as a context manager (or the ``private_postgres`` fixture of ``tests/faults/conftest.py``):
the server is stopped and its folder removed on exit, whatever ends the test; ``workdir`` holds the
watchdog and the reaping of a killed run's leftovers. Must run as root (commands switch to the
``postgres`` user) or as ``postgres`` itself. Methods are synchronous: from async code call them
through ``asyncio.to_thread`` when a connection of the same event loop must keep running.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.faults import workdir

SERVER_USER = "postgres"
PG_ROOT = Path("/usr/lib/postgresql")
STOP_MODES = ("smart", "fast", "immediate")


def bin_dir() -> Path:
    """``/usr/lib/postgresql/<version>/bin`` of the newest installed version that has ``initdb``."""
    versions = [
        entry
        for entry in PG_ROOT.glob("*")
        if re.fullmatch(r"\d+(\.\d+)?", entry.name) and (entry / "bin" / "initdb").exists()
    ]
    if not versions:
        raise RuntimeError(f"no PostgreSQL server binaries (initdb) under {PG_ROOT}")
    newest = max(versions, key=lambda entry: tuple(int(p) for p in entry.name.split(".")))
    return newest / "bin"


def _as_server_user(argv: list[str], folder: Path, timeout: float = 120) -> str:
    user = SERVER_USER if os.geteuid() == 0 else None
    return workdir.run(argv, timeout=timeout, user=user, cwd=folder).stdout


def cleanup_folder(folder: Path) -> None:
    """Stop the server that runs from ``folder`` at once. Used by the reaper and the watchdog."""
    if (folder / "data" / "postmaster.pid").exists():
        _as_server_user(
            [
                str(bin_dir() / "pg_ctl"),
                "-D",
                str(folder / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            folder,
            timeout=60,
        )


class PrivatePostgres:
    """One private PostgreSQL server; committed data survives ``stop``/``start``."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.port = 0
        self.start_seconds: float | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivatePostgres:
        try:
            self.create()
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.destroy()

    def create(self) -> float:
        """``initdb`` a new cluster in a folder of its own; the seconds it took.

        A creation that fails (or is interrupted) removes what it made.
        """
        if self.folder is not None:
            raise RuntimeError(f"{self.folder} was already created")
        began = time.monotonic()
        folder = self.folder = workdir.claim("postgres", "pg")
        try:
            self._watchdog = workdir.start_watchdog("postgres", folder)
            self._initdb(folder)
        except BaseException:
            self.destroy()
            raise
        return time.monotonic() - began

    def _initdb(self, folder: Path) -> None:
        self.port = workdir.free_port()
        (folder / "sockets").mkdir()
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            for path in (folder, folder / "sockets"):
                os.chown(path, user.pw_uid, user.pw_gid)
        _as_server_user(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(folder / "data"),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # the cluster's files only; commits later are durable as usual
            ],
            folder,
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{folder / 'sockets'}'",
            "max_connections": "100",
            "shared_buffers": "32MB",
            "fsync": "on",
        }
        with (folder / "data" / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> float:
        """Start the server and wait until it accepts connections; the seconds it took."""
        folder = self._folder()
        began = time.monotonic()
        self._pg_ctl("-l", str(folder / "server.log"), "-t", "60", "-w", "start")
        self.start_seconds = time.monotonic() - began
        return self.start_seconds

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: ``immediate`` is a crash (recovery replays the WAL at the next start)."""
        if mode not in STOP_MODES:
            raise ValueError(f"mode must be one of {STOP_MODES}, not {mode!r}")
        self._pg_ctl("-m", mode, "-t", "60", "-w", "stop")

    def restart(self, mode: str = "immediate") -> float:
        self.stop(mode)
        return self.start()

    def running(self) -> bool:
        return (self._folder() / "data" / "postmaster.pid").exists()

    def url(self, dbname: str = "postgres") -> str:
        self._folder()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """Create ``dbname`` (with ``createdb``); its URL."""
        folder = self._folder()
        _as_server_user(
            [str(bin_dir() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), dbname], folder
        )
        return self.url(dbname)

    def destroy(self) -> None:
        """Stop the server at once and remove its folder. Safe to call twice or after a failure."""
        folder, self.folder = self.folder, None
        if folder is not None:
            try:
                workdir.cleanup("postgres", folder)
            finally:
                workdir.stop_watchdog(self._watchdog)
                self._watchdog = None

    def log_tail(self, lines: int = 30) -> str:
        log = self._folder() / "server.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {log})"

    def _pg_ctl(self, *args: str) -> None:
        folder = self._folder()
        _as_server_user([str(bin_dir() / "pg_ctl"), "-D", str(folder / "data"), *args], folder)

    def _folder(self) -> Path:
        if self.folder is None:
            raise RuntimeError("the server is not created (or was destroyed)")
        return self.folder
