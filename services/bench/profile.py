"""Profiling the bench's phases: py-spy samples of each service and CPU seconds per message.

``nuvem-ledger bench --profile DIR`` wraps each phase it runs in ``Profiler.phase``: py-spy
records every service process (``--format raw``: collapsed stacks with their sample counts) for
exactly that phase, and the CPU time each service, the broker and the benchmark database's
backends spent during it is read from ``/proc``. CPU seconds per message is robust to a busy
machine in a way wall-clock rates are not (other work slows a process down, it does not make it
spend more CPU per message). ``summarize`` turns a raw file into a short text: the top functions
by self and total time and self time by package (``python -m tools.profile`` re-reads raw files).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from services.bench.infra import BENCH_DB, Cluster, Observer

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_cpu(pid: int, *, children: bool = False) -> float:
    """utime + stime of ``pid`` in seconds (plus its reaped children's with ``children``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # Fields after the comm: state is index 0, utime 11, stime 12, cutime 13, cstime 14.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def _machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (every core), from the first line of /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS


def _processes() -> list[tuple[int, str, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append((int(entry.name), comm, cmdline))
    return found


def outside_cpu() -> dict[str, float]:
    """CPU seconds so far of the broker (every ``beam.smp``) and of the benchmark database's
    backends (shared machines: the broker's figure includes other users of it)."""
    broker = postgres = 0.0
    for pid, comm, cmdline in _processes():
        if comm == "beam.smp":
            broker += _stat_cpu(pid)
        elif comm.startswith("postgres") and f" {BENCH_DB} " in cmdline:
            postgres += _stat_cpu(pid)
    return {"rabbitmq": broker, "postgres(bench db)": postgres}


def _py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


@dataclass
class PhaseProfile:
    name: str
    messages: int = 0
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)

    def per_message_ms(self) -> dict[str, float]:
        if not self.messages:
            return {}
        return {k: v / self.messages * 1000 for k, v in self.cpu_s.items()}


class Profiler:
    """Records each service process during a phase; writes raw stacks and summaries to ``out``."""

    def __init__(self, cluster: Cluster, out: Path, rate: int = 100) -> None:
        self.cluster = cluster
        self.out = out
        self.rate = rate
        self.phases: list[PhaseProfile] = []
        (out / "raw").mkdir(parents=True, exist_ok=True)

    def _cpu(self) -> dict[str, float]:
        own = {n: _stat_cpu(p.popen.pid) for n, p in self.cluster.services.items()}
        # The load generator and observer (this process) and the simulator share the cores too;
        # "machine" is every process's (other sessions' included), from /proc/stat.
        return (
            own
            | outside_cpu()
            | {
                "bench (load, observer)": _stat_cpu(os.getpid()),
                "simulator": _stat_cpu(self.cluster.simulator.popen.pid),
                "machine (all processes)": _machine_cpu(),
            }
        )

    def _start_spies(self, phase: str) -> list[tuple[str, subprocess.Popen[bytes]]]:
        spy = _py_spy()
        if spy is None:
            return []
        spies = []
        for service, process in self.cluster.services.items():
            raw = self.out / "raw" / f"{phase}.{service}.txt"
            command = [spy, "record", "--pid", str(process.popen.pid), "-f", "raw"]
            command += ["-o", str(raw), "-r", str(self.rate), "--nonblocking"]
            quiet = subprocess.DEVNULL
            spies.append((service, subprocess.Popen(command, stdout=quiet, stderr=quiet)))  # noqa: S603
        return spies

    @contextlib.asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[PhaseProfile]:
        """Profile the body; set ``messages`` on the yielded record (orders of the phase)."""
        record = PhaseProfile(name)
        spies = self._start_spies(name)
        before, started = self._cpu(), time.perf_counter()
        try:
            yield record
        finally:
            record.wall_s = time.perf_counter() - started
            after = self._cpu()
            record.cpu_s = {k: after[k] - before.get(k, 0.0) for k in after}
            for _, popen in spies:
                popen.send_signal(signal.SIGINT)
            for service, popen in spies:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(timeout=30)
                raw = self.out / "raw" / f"{name}.{service}.txt"
                if raw.exists():
                    text = summarize(raw.read_text(), f"{name} / {service}")
                    (self.out / f"{name}.{service}.txt").write_text(text)
            self.phases.append(record)

    def write_cpu_table(self) -> str:
        lines = [
            "CPU seconds per phase, and CPU milliseconds per message (order or confirmation)",
            "",
        ]
        for record in self.phases:
            lines.append(f"{record.name}: {record.messages} messages in {record.wall_s:.1f} s wall")
            per = record.per_message_ms()
            for key, seconds in record.cpu_s.items():
                lines.append(f"  {key:<22} {seconds:8.2f} s   {per.get(key, 0.0):7.3f} ms/message")
            lines.append("")
        text = "\n".join(lines)
        (self.out / "cpu.txt").write_text(text + "\n")
        return text


def _frame_key(frame: str) -> tuple[str, str]:
    """``func (path:line)`` → (``func (short path)``, package)."""
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        short = path.split("site-packages/", 1)[1]
        package = short.split("/", 1)[0]
    elif "/lib/python3" in path:
        short = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
        package = "stdlib:" + short.split("/", 1)[0].removesuffix(".py")
    else:
        parts = Path(path).parts
        for root in ("services", "shared"):
            if root in parts:
                parts = parts[parts.index(root) :]
                break
        short = "/".join(parts)
        package = short
    return f"{func} ({short})", package


# Where a sample's time goes, by what its stack holds (first match wins).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "publishing (building, framing, socket writes incl. acks)",
        (
            "Broker.publish",
            "Exchange.publish (aio_pika",
            "Channel.basic_publish",
            "Connection.__writer",
            "amqp_message",
            "shared/publishing.py",
        ),
    ),
    ("AMQP in (frames read, deliveries)", ("Connection.__reader", "Channel._reader")),
    ("PostgreSQL (asyncpg)", ("(asyncpg/",)),
    ("HTTP (aiohttp)", ("(aiohttp/",)),
    ("event loop itself (uvloop)", ("Runner.run (asyncio/runners.py)$",)),
)


# Frames every stack holds (the process's entry point): left out of "total time".
_WRAPPERS = {
    "_run_module_as_main (<frozen runpy>)",
    "_run_code (<frozen runpy>)",
    "Runner.run (asyncio/runners.py)",
    "<module> (services/cli/__main__.py)",
    "run_services (shared/launch.py)",
    "main (services/cli/parser.py)",
    "_run (services/cli/run.py)",
    "run (uvloop/__init__.py)",
}


def _category(frames: list[str]) -> str:
    joined = ";".join(frames)
    for name, markers in CATEGORIES:
        for marker in markers:
            if marker.endswith("$"):
                if frames and frames[-1].startswith(marker[:-1]):
                    return name
            elif marker in joined:
                return name
    return "the rest (handlers, decoding, domain)"


def summarize(raw: str, title: str, top: int = 20) -> str:
    """Top functions by self and total samples, self samples by package/module, and samples by
    category (publishing, AMQP in, PostgreSQL, HTTP, event loop, the rest)."""
    categories: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        keys = [_frame_key(f) for f in stack.split(";")]
        if not keys:
            continue
        categories[_category([k[0] for k in keys])] += count
        own[keys[-1][0]] += count
        packages[keys[-1][1]] += count
        for name in {k[0] for k in keys} - _WRAPPERS:
            total[name] += count
    if not samples:
        return f"{title}: no samples\n"

    def block(heading: str, counter: Counter[str]) -> list[str]:
        rows = [heading]
        for name, count in counter.most_common(top):
            rows.append(f"  {100 * count / samples:5.1f}%  {name}")
        return [*rows, ""]

    lines = [f"{title}: {samples} samples (on-CPU, py-spy)", ""]
    lines += block("samples by category (stack holds ...)", categories)
    lines += block("self time by package/module", packages)
    lines += block("self time by function", own)
    lines += block("total time by function (in the stack)", total)
    return "\n".join(lines)


class Spans:
    """``async with spans(name)``: a profiled phase when there is a profiler, else nothing; the
    phase's messages are the ``sale.pending_review`` and ``sale.confirmed`` the observer saw."""

    def __init__(self, profiler: Profiler | None, observer: Observer) -> None:
        self.profiler = profiler
        self.observer = observer

    def _seen(self) -> int:
        return len(self.observer.pending) + len(self.observer.confirmed)

    @contextlib.asynccontextmanager
    async def __call__(self, name: str) -> AsyncIterator[None]:
        if self.profiler is None:
            yield
            return
        seen = self._seen()
        async with self.profiler.phase(name) as record:
            try:
                yield
            finally:
                record.messages = self._seen() - seen
