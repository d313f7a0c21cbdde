"""``python -m tools.audit`` end to end, against a stand-in for PyPI's JSON API over real HTTP.

``make audit`` runs the same tool against pypi.org on every ``make test``; here the advisory
data is fixed, so each outcome is certain: a known vulnerability fails, an ignore with a reason
lets it through, an ignore without one fails, and a pin the data cannot speak for is reported.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]

PROJECTS: dict[str, dict[str, Any]] = {
    "vulnerable": {
        "info": {"version": "2.0"},
        "vulnerabilities": [
            {
                "id": "PYSEC-2026-1",
                "aliases": ["CVE-2026-1", "GHSA-aaaa-bbbb-cccc"],
                "fixed_in": [],
                "withdrawn": None,
            },
            {  # the same advisory under its other id: counted once
                "id": "GHSA-aaaa-bbbb-cccc",
                "aliases": ["CVE-2026-1", "PYSEC-2026-1"],
                "fixed_in": [],
                "withdrawn": None,
            },
        ],
    },
    "withdrawn": {
        "info": {"version": "1.0"},
        "vulnerabilities": [{"id": "PYSEC-2026-2", "withdrawn": "2026-02-01T00:00:00Z"}],
    },
    "clean": {"info": {"version": "3.1"}, "vulnerabilities": []},
}


@dataclass(frozen=True)
class Outcome:
    code: int
    output: str


@pytest.fixture
async def pypi() -> AsyncIterator[str]:
    async def project(request: web.Request) -> web.Response:
        found = PROJECTS.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound
        return web.json_response(found)

    app = web.Application()
    app.router.add_get("/pypi/{name}/json", project)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _audit(tmp_path: Path, pypi: str, pins: str, ignores: str = "") -> Outcome:
    (tmp_path / "pins.txt").write_text(pins)
    (tmp_path / "ignore.toml").write_text(ignores)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.audit",
        "--requirements",
        str(tmp_path / "pins.txt"),
        "--ignore-file",
        str(tmp_path / "ignore.toml"),
        "--pypi-url",
        pypi,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Outcome(proc.returncode, out.decode())


async def test_a_known_vulnerability_fails_the_audit(tmp_path: Path, pypi: str) -> None:
    done = await _audit(tmp_path, pypi, "clean==3.1\nvulnerable==2.0\nwithdrawn==1.0\n")
    assert done.code == 1, done.output
    assert "vulnerable==2.0: PYSEC-2026-1" in done.output
    assert done.output.count("vulnerable==2.0:") == 1, "one advisory, reported once"
    assert "PYSEC-2026-2" not in done.output, "a withdrawn advisory does not count"
    assert "3 of 3 pins audited, 1 known vulnerability" in done.output


async def test_an_ignore_with_a_reason_lets_it_through(tmp_path: Path, pypi: str) -> None:
    ignore = '[[ignore]]\nid = "CVE-2026-1"\nreason = "we never call the affected API"\n'
    done = await _audit(tmp_path, pypi, "vulnerable==2.0\n", ignore)
    assert done.code == 0, done.output
    assert "ignored vulnerable==2.0: PYSEC-2026-1: we never call the affected API" in done.output


async def test_an_ignore_without_a_reason_or_expired_fails(tmp_path: Path, pypi: str) -> None:
    no_reason = await _audit(tmp_path, pypi, "vulnerable==2.0\n", '[[ignore]]\nid = "CVE-2026-1"\n')
    assert no_reason.code == 2, no_reason.output
    assert "has no reason" in no_reason.output
    expired = '[[ignore]]\nid = "CVE-2026-1"\nreason = "x"\nuntil = 2020-01-01\n'
    done = await _audit(tmp_path, pypi, "vulnerable==2.0\n", expired)
    assert done.code == 2, done.output
    assert "expired" in done.output


async def test_a_pin_the_data_cannot_speak_for_is_reported(tmp_path: Path, pypi: str) -> None:
    done = await _audit(tmp_path, pypi, "vulnerable==1.0\nunknown-here==1.0\nclean==3.1\n")
    assert done.code == 0, done.output
    assert "not audited" in done.output
    assert "vulnerable==1.0" in done.output
    assert "unknown-here==1.0" in done.output
    assert "1 of 3 pins audited" in done.output
