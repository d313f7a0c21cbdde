"""Supply chain: every dependency pinned, the image built from the pins without build tools in
what runs, and the audit's rules (what fails, what an ignore needs)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.requirements import Requirement

from tools.audit import (
    Ignored,
    IgnoreFileError,
    Vulnerability,
    from_pip_audit,
    from_project,
    judge,
    normalise,
    parse_ignores,
    parse_pins,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
TODAY = dt.date(2026, 6, 1)


# --- the lock file ---------------------------------------------------------------------------


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + project["optional-dependencies"]["dev"]
    return [Requirement(text) for text in names]


def test_every_dependency_is_pinned_within_what_pyproject_allows() -> None:
    pins = parse_pins((ROOT / "constraints.txt").read_text())
    for requirement in _declared():
        name = normalise(requirement.name)
        assert name in pins, f"{name} is not pinned in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} is outside {requirement.specifier}: run `make lock`"
        )


def test_the_lock_holds_exact_pins_only() -> None:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[^\s;]+( ; .+)?", text), line


def test_make_installs_through_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    assert installs
    assert all("--constraint $(LOCK)" in line for line in installs), installs
    assert re.search(r"^test: .*\baudit\b", makefile, re.MULTILINE), "make test runs the audit"


# --- the image -------------------------------------------------------------------------------


def _stages() -> dict[str, list[str]]:
    """Instructions of each stage of the Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {"": []}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match[2]
            stages[current] = [line]
        else:
            stages[current].append(line)
    return stages


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_runtime_stage_is_slim_non_root_and_without_build_tools() -> None:
    stages = _stages()
    assert list(stages)[-1] == "runtime", "the runtime stage is the last one (the image)"
    args = dict(re.findall(r"ARG\s+(\w+)=(\S+)", " ".join(stages[""])))  # before any FROM
    runtime = stages["runtime"]
    image = runtime[0].split()[1]
    assert args[image.strip("${}")].endswith(("-slim", "-slim-bookworm")), image
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users, "the image names its user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"
    assert int(uid) != 0
    body = " ".join(runtime)
    assert not re.search(r"apt-get|apk add|dnf |yum ", body), "the runtime installs no packages"
    assert "! command -v gcc" in body, "the build proves the compiler is absent"
    assert "COPY --from=build" not in body, "wheels are mounted for one step, not kept in a layer"


def test_the_build_stage_builds_from_the_pins() -> None:
    build = " ".join(_stages()["build"])
    assert "COPY constraints.txt" in build
    assert re.search(r"pip wheel --constraint constraints.txt", build)
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!constraints.txt" in ignore


# --- the audit's rules -----------------------------------------------------------------------


def test_an_ignore_with_an_id_a_reason_and_a_future_date_counts() -> None:
    ok = parse_ignores(
        '[[ignore]]\nid = "GHSA-1"\nreason = "not reachable"\nuntil = 2026-12-31\n', today=TODAY
    )
    assert ok == [Ignored("GHSA-1", "not reachable", dt.date(2026, 12, 31))]
    assert parse_ignores("", today=TODAY) == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('[[ignore]]\nid = "GHSA-1"\n', id="no reason"),
        pytest.param('[[ignore]]\nid = "GHSA-1"\nreason = "  "\n', id="blank reason"),
        pytest.param('[[ignore]]\nreason = "x"\n', id="no id"),
        pytest.param('[[ignore]]\nid = "GHSA-1"\nreason = "x"\nuntil = 2026-05-31\n', id="expired"),
        pytest.param('[[ignore]]\nid = "GHSA-1"\nreason = "x"\nuntil = "soon"\n', id="bad date"),
        pytest.param("[[ignore\n", id="not TOML"),
        pytest.param('ignore = "GHSA-1"\n', id="not a list"),
    ],
)
def test_an_ignore_without_a_reason_or_past_its_date_is_refused(text: str) -> None:
    with pytest.raises(IgnoreFileError):
        parse_ignores(text, today=TODAY)


@given(st.text(max_size=200))
def test_a_malformed_ignore_file_is_refused_never_crashes(text: str) -> None:
    with contextlib.suppress(IgnoreFileError):
        parse_ignores(text, today=TODAY)


def test_pins_are_read_with_markers_and_normalised_names() -> None:
    text = "Foo_Bar==1.2\nuvloop==0.23.0 ; sys_platform != 'win32'\n    # via x\n-e .\n"
    assert parse_pins(text) == {"foo-bar": "1.2", "uvloop": "0.23.0"}


def test_the_project_document_speaks_only_for_the_latest_release() -> None:
    project = {
        "info": {"version": "2.0"},
        "vulnerabilities": [
            {"id": "PYSEC-1", "aliases": ["CVE-1"], "fixed_in": ["2.1"], "withdrawn": None},
            {"id": "PYSEC-2", "aliases": [], "fixed_in": [], "withdrawn": "2026-01-01"},
        ],
    }
    assert from_project("pkg", "2.0", project) == [
        Vulnerability("pkg", "2.0", "PYSEC-1", ("CVE-1",), ("2.1",))
    ]
    assert from_project("pkg", "1.9", project) is None


def test_pip_audit_findings_and_skips_are_read() -> None:
    report = {
        "dependencies": [
            {"name": "A_b", "version": "1", "vulns": [{"id": "X", "aliases": ["Y"]}]},
            {"name": "c", "skip_reason": "Dependency not found on PyPI"},
            {"name": "d", "version": "2", "vulns": []},
        ]
    }
    found, skipped = from_pip_audit(report)
    assert found == [Vulnerability("a-b", "1", "X", ("Y",))]
    assert skipped == {"c"}


def test_an_advisory_is_ignored_by_any_of_its_ids_and_counted_once() -> None:
    ghsa = Vulnerability("pkg", "1", "GHSA-1", ("CVE-1", "PYSEC-1"))
    pysec = Vulnerability("pkg", "1", "PYSEC-1", ("CVE-1", "GHSA-1"))
    other = Vulnerability("pkg", "1", "PYSEC-9")
    verdict = judge([ghsa, pysec, other], [Ignored("CVE-1", "not used", None)])
    assert verdict.found == [other]
    assert [v for v, _ in verdict.ignored] == [ghsa]
    assert verdict.failed
    assert not judge([ghsa], [Ignored("CVE-1", "not used", None)]).failed
