"""``make audit``: known vulnerabilities in the pinned dependencies, from PyPI's advisory data.

Every pin of ``constraints.txt`` (runtime and dev: what ``make`` installs) is checked, in two
steps:

1. ``pip-audit`` (PyPI service) asks PyPI about each exact release (``/pypi/<name>/<version>/json``).
2. A pin pip-audit could not look up (PyPI's per-release JSON does not answer on every network:
   on the project's machines only the per-project document does) is checked against the
   per-project document (``/pypi/<name>/json``), whose ``vulnerabilities`` are those of the
   latest release: exact when the pin *is* the latest release. A pin older than that cannot be
   checked there; it is listed as not audited, and ``make lock-upgrade`` brings it up to date.

A known vulnerability fails the audit unless ``pip-audit-ignore.toml`` ignores it (by its id or
any of its aliases). An entry counts only with a reason and, when it has one, before its
``until`` date; a malformed or expired entry fails the audit too::

    [[ignore]]
    id = "GHSA-xxxx-xxxx-xxxx"        # or PYSEC-..., CVE-...: any id of the advisory
    package = "name"                  # for the reader
    reason = "why it does not apply here, or what we wait for"
    until = 2026-12-31                # optional: after this day the entry stops counting
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
IGNORE_FILE = ROOT / "pip-audit-ignore.toml"
PYPI = "https://pypi.org"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


class IgnoreFileError(ValueError):
    """The ignore file is not what the module docstring describes."""


@dataclass(frozen=True)
class Ignored:
    id: str
    reason: str
    until: dt.date | None


@dataclass(frozen=True)
class Vulnerability:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...] = ()
    fixed_in: tuple[str, ...] = ()

    def ids(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass
class Verdict:
    found: list[Vulnerability] = field(default_factory=list)
    ignored: list[tuple[Vulnerability, Ignored]] = field(default_factory=list)
    not_audited: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.found)


def parse_ignores(text: str, *, today: dt.date) -> list[Ignored]:
    """The entries of an ignore file, or ``IgnoreFileError`` naming the first bad one."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise IgnoreFileError(f"not TOML: {exc}") from exc
    entries = data.get("ignore", [])
    if not isinstance(entries, list):
        raise IgnoreFileError("`ignore` must be an array of tables ([[ignore]])")
    found: list[Ignored] = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise IgnoreFileError(f"entry {number} is not a table")
        vuln, reason, until = entry.get("id"), entry.get("reason"), entry.get("until")
        if not isinstance(vuln, str) or not vuln.strip():
            raise IgnoreFileError(f"entry {number} has no id")
        if not isinstance(reason, str) or not reason.strip():
            raise IgnoreFileError(f"entry {number} ({vuln}) has no reason")
        if until is not None and (not isinstance(until, dt.date) or isinstance(until, dt.datetime)):
            raise IgnoreFileError(f"entry {number} ({vuln}): until must be a date (2026-12-31)")
        if until is not None and until < today:
            raise IgnoreFileError(f"entry {number} ({vuln}) expired on {until}: review it")
        found.append(Ignored(vuln.strip(), reason.strip(), until))
    return found


def parse_pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by normalised name (markers dropped)."""
    pins = {}
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[normalise(match[1])] = match[2]
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def from_pip_audit(report: Mapping[str, Any]) -> tuple[list[Vulnerability], set[str]]:
    """pip-audit's JSON report: the vulnerabilities it found, and the packages it skipped."""
    found, skipped = [], set()
    for dep in report.get("dependencies", []):
        name = normalise(str(dep["name"]))
        if "skip_reason" in dep:
            skipped.add(name)
            continue
        for vuln in dep.get("vulns", []):
            found.append(
                Vulnerability(
                    name,
                    str(dep["version"]),
                    str(vuln["id"]),
                    tuple(vuln.get("aliases", [])),
                    tuple(vuln.get("fix_versions", [])),
                )
            )
    return found, skipped


def from_project(name: str, pinned: str, project: Mapping[str, Any]) -> list[Vulnerability] | None:
    """The vulnerabilities of ``name==pinned`` from PyPI's per-project document, or None when
    that document cannot tell (the pin is not the latest release)."""
    if str(project.get("info", {}).get("version")) != pinned:
        return None
    return [
        Vulnerability(
            name,
            pinned,
            str(v["id"]),
            tuple(v.get("aliases") or ()),
            tuple(v.get("fixed_in") or ()),
        )
        for v in project.get("vulnerabilities") or []
        if not v.get("withdrawn")
    ]


def dedupe(found: Iterable[Vulnerability]) -> list[Vulnerability]:
    """One entry per advisory: PyPI lists some twice (a PYSEC and a GHSA aliasing each other)."""
    kept: list[Vulnerability] = []
    for vuln in found:
        if not any(k.package == vuln.package and k.ids() & vuln.ids() for k in kept):
            kept.append(vuln)
    return kept


def judge(found: Iterable[Vulnerability], ignores: Sequence[Ignored]) -> Verdict:
    """Each advisory found, ignored (by its id or an alias) or not."""
    verdict = Verdict()
    by_id = {i.id: i for i in ignores}
    for vuln in dedupe(found):
        match = next((by_id[i] for i in sorted(vuln.ids()) if i in by_id), None)
        if match is None:
            verdict.found.append(vuln)
        else:
            verdict.ignored.append((vuln, match))
    return verdict


def run_pip_audit(requirements: Path) -> dict[str, Any]:
    """pip-audit over exact pins, without resolving or installing anything; its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        command = [
            str(Path(sys.executable).with_name("pip-audit")),
            *("--requirement", str(requirements), "--no-deps", "--disable-pip"),
            *("--vulnerability-service", "pypi", "--progress-spinner", "off"),
            *("--format", "json", "--output", str(out)),
        ]
        subprocess.run(command, check=False, capture_output=True)  # noqa: S603 - our own argv
        if not out.exists():
            raise RuntimeError("pip-audit wrote no report")
        return dict(json.loads(out.read_text()))


def fetch_project(base: str, name: str) -> dict[str, Any] | None:
    url = f"{base.rstrip('/')}/pypi/{name}/json"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - https or a test's
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def audit(
    pins: Mapping[str, str], ignores: Sequence[Ignored], *, pypi: str, report: Mapping[str, Any]
) -> Verdict:
    found, skipped = from_pip_audit(report)
    to_check = sorted(skipped & set(pins))
    with ThreadPoolExecutor(max_workers=8) as pool:
        projects = dict(
            zip(to_check, pool.map(lambda n: fetch_project(pypi, n), to_check), strict=True)
        )
    unknown = []
    for name in to_check:
        project = projects[name]
        vulns = None if project is None else from_project(name, pins[name], project)
        if vulns is None:
            unknown.append(f"{name}=={pins[name]}")
        else:
            found.extend(vulns)
    verdict = judge(found, ignores)
    verdict.not_audited = unknown
    return verdict


def _describe(verdict: Verdict, total: int) -> str:
    lines = [
        f"audit: {v.package}=={v.version}: {v.id} ({', '.join(v.aliases)}) fixed in "
        f"{', '.join(v.fixed_in) or 'no release yet'}"
        for v in verdict.found
    ]
    lines += [
        f"audit: ignored {v.package}=={v.version}: {v.id}: {i.reason}" for v, i in verdict.ignored
    ]
    if verdict.not_audited:
        lines.append(
            "audit: not audited (PyPI's per-release data did not answer, and the pin is older than "
            "the latest release: capped in pyproject.toml, or `make lock-upgrade` updates it): "
            + ", ".join(verdict.not_audited)
        )
    audited = total - len(verdict.not_audited)
    lines.append(
        f"audit: {audited} of {total} pins audited, {len(verdict.found)} known vulnerabilit"
        f"{'y' if len(verdict.found) == 1 else 'ies'}, {len(verdict.ignored)} ignored"
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.audit", description=__doc__)
    parser.add_argument("--requirements", type=Path, default=LOCK)
    parser.add_argument("--ignore-file", type=Path, default=IGNORE_FILE)
    parser.add_argument(
        "--pypi-url",
        help="a stand-in for PyPI's JSON API (tests): pip-audit, which knows only pypi.org, is skipped",
    )
    args = parser.parse_args(argv)
    try:
        text = args.ignore_file.read_text() if args.ignore_file.exists() else ""
        ignores = parse_ignores(text, today=dt.datetime.now(dt.UTC).date())
    except IgnoreFileError as exc:
        sys.stderr.write(f"audit: error: {args.ignore_file.name}: {exc}\n")
        return 2
    pins = parse_pins(args.requirements.read_text())
    if args.pypi_url:
        report: dict[str, Any] = {
            "dependencies": [{"name": n, "skip_reason": "stand-in"} for n in pins]
        }
    else:
        report = run_pip_audit(args.requirements)
    verdict = audit(pins, ignores, pypi=args.pypi_url or PYPI, report=report)
    sys.stderr.write(_describe(verdict, len(pins)))
    return 1 if verdict.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
