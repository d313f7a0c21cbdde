"""Whether a Docker engine answers (the demo and the tests use containers only then)."""

from __future__ import annotations

import shutil
import subprocess


def docker_answers() -> bool:
    """True when ``docker info`` succeeds: a client alone, with no engine, is not enough."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0
