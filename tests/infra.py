"""Where the tests find RabbitMQ and PostgreSQL, and how each test gets its own vhost and database.

Order of preference: ``AMQP_URL`` / ``DATABASE_URL`` when set, the local services otherwise, and
containers (testcontainers, imported lazily: it probes Docker at import) only when neither
answers and a Docker engine does. If nothing works the tests fail with one clear message: they
never skip.

Isolation: every test that needs the broker gets a fresh vhost (created through the management
API when it answers, ``rabbitmqctl`` otherwise) and every test that needs the database gets a
fresh database cloned from a migrated template, so no test sees another's messages or rows.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from services import system
from shared.containers import docker_answers
from shared.db import migrate

DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/nuvem_ledger_test"
# Names carry the pid of the pytest session that made them, so concurrent sessions (several
# developers' runs on one machine) never drop each other's databases, and leftovers of a killed
# session are recognised and removed by the next one.
SESSION = os.getpid()
TEMPLATE_DB = f"nl_tpl_{SESSION}"


class InfrastructureError(RuntimeError):
    """Neither the configured services, the local ones nor containers are reachable."""


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


@dataclass
class Infrastructure:
    amqp_url: str
    database_url: str
    management_url: str | None
    _containers: tuple[Any, ...] = ()

    def stop(self) -> None:
        for container in self._containers:
            container.stop()


def locate() -> Infrastructure:
    amqp = os.environ.get("AMQP_URL", DEFAULT_AMQP)
    database = os.environ.get("DATABASE_URL", DEFAULT_DATABASE)
    if _reachable(amqp, 5672) and _reachable(database, 5432):
        host = urlsplit(amqp).hostname or "127.0.0.1"
        return Infrastructure(amqp, database, f"http://{host}:15672")
    if not docker_answers():
        raise InfrastructureError(
            f"RabbitMQ ({_safe(amqp)}) or PostgreSQL ({_safe(database)}) is not answering and no "
            "Docker engine is available for testcontainers. Start them (see README: "
            "`rabbitmq-server -detached`, `pg_ctlcluster ... main start`) or set AMQP_URL/DATABASE_URL."
        )
    from testcontainers.postgres import PostgresContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    rabbit = RabbitMqContainer("rabbitmq:3.13-management").start()
    postgres = PostgresContainer("postgres:16", driver=None).start()
    rhost, rport = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
    mport = rabbit.get_exposed_port(15672)
    return Infrastructure(
        f"amqp://guest:guest@{rhost}:{rport}/",
        postgres.get_connection_url().rsplit("/", 1)[0] + "/nuvem_ledger_test",
        f"http://{rhost}:{mport}",
        (rabbit, postgres),
    )


def _safe(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))


# --- vhosts --------------------------------------------------------------------------------------


def _management(
    infra: Infrastructure, method: str, path: str, body: dict[str, Any] | None = None
) -> bool:
    if infra.management_url is None:
        return False
    parts = urlsplit(infra.amqp_url)
    user, password = parts.username or "guest", parts.password or "guest"
    request = urllib.request.Request(
        infra.management_url + path,
        method=method,
        data=json.dumps(body or {}).encode(),
        headers={
            "content-type": "application/json",
            "authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except (urllib.error.URLError, OSError):
        return False


def create_vhost(infra: Infrastructure) -> str:
    vhost = f"test-{uuid.uuid4().hex[:12]}"
    user = urlsplit(infra.amqp_url).username or "guest"
    name = quote(vhost, safe="")
    if _management(infra, "PUT", f"/api/vhosts/{name}") and _management(
        infra,
        "PUT",
        f"/api/permissions/{name}/{quote(user, safe='')}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    ):
        return vhost
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise InfrastructureError(
            "cannot create a RabbitMQ vhost: no management API and no rabbitmqctl"
        )
    subprocess.run([ctl, "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [ctl, "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return vhost


def delete_vhost(infra: Infrastructure, vhost: str) -> None:
    if _management(infra, "DELETE", f"/api/vhosts/{quote(vhost, safe='')}"):
        return
    ctl = shutil.which("rabbitmqctl")
    if ctl is not None:
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, timeout=60, check=False)


# --- databases -----------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def prepare_template(infra: Infrastructure) -> None:
    """Build the migrated template database once per test session; drop dead sessions' leftovers."""
    admin = await asyncpg.connect(with_database(infra.database_url, "postgres"))
    try:
        names = await admin.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'nl\\_tpl\\_%' OR datname LIKE 'nl\\_test\\_%'"
        )
        for row in names:
            parts = row["datname"].split("_")
            if len(parts) >= 3 and parts[2].isdigit() and not _pid_alive(int(parts[2])):
                await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
    finally:
        await admin.close()
    await migrate(with_database(infra.database_url, TEMPLATE_DB), system.migrations())


async def drop_template(infra: Infrastructure) -> None:
    admin = await asyncpg.connect(with_database(infra.database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
    finally:
        await admin.close()


async def create_database(infra: Infrastructure) -> str:
    name = f"nl_test_{SESSION}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(with_database(infra.database_url, "postgres"))
    try:
        for attempt in range(20):
            try:
                await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
                break
            except asyncpg.ObjectInUseError:
                # Another test is cloning the template at this instant; clones are serialised.
                await asyncio.sleep(0.05 * (attempt + 1))
    finally:
        await admin.close()
    return with_database(infra.database_url, name)


async def drop_database(infra: Infrastructure, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(with_database(infra.database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
