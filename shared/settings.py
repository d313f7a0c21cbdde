"""Configuration from environment variables (and a ``.env`` file), as CONTRACT.md names them.

Defaults fit a machine with RabbitMQ (guest/guest) and PostgreSQL (trust) on localhost, so a
newcomer runs everything without exporting anything. Secrets are ``SecretStr`` so that printing
or logging a settings object never reveals them.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every variable of CONTRACT.md, plus a few tuning knobs of our own (prefixed by purpose)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/nuvem_ledger"
    nuvemshop_api_url: str = "https://api.tiendanube.com/v1"
    nuvemshop_auth_url: str = "https://www.tiendanube.com"
    nuvemshop_app_id: str | None = None
    nuvemshop_client_secret: SecretStr | None = None
    nuvemshop_token_header: str = "Authentication"  # noqa: S105 - a header name
    nuvemshop_user_agent: str = "nuvem-ledger (https://github.com/nuvem-ledger/nuvem-ledger)"
    ingest_http_port: int = 8080
    mapper_http_port: int = 8081
    ledger_http_port: int = 8082
    http_host: str = "0.0.0.0"  # noqa: S104 - services listen on every interface in a pod
    public_base_url: str | None = None
    # One Fernet key, or a comma-separated list: the first encrypts, every one decrypts.
    token_encryption_key: SecretStr | None = None
    # Shared with the ERP: the key of the HMAC that signs connect links (connect_links.py).
    connect_link_secret: SecretStr | None = None
    poll_interval_seconds: float = Field(default=300.0, gt=0)
    log_level: str = "INFO"
    log_format: str = "json"

    # The installation's calendar of a sale's date (and so of its default due date), SPEC §8.5:
    # the day in São Paulo unless a store's own ``timezone`` setting names another IANA zone.
    sale_timezone: str = "America/Sao_Paulo"

    # How long consumed message ids are remembered (longer than any redelivery window).
    inbox_retention_days: float = Field(default=7.0, gt=0)
    # How long ingest keeps what it saw of an order (webhooks, fetches, skips) for `orders trace`.
    trace_retention_days: float = Field(default=30.0, gt=0)
    # The operator HTTP API's bearer token (/ops on each service's port); unset, /ops is off (404).
    ops_api_token: SecretStr | None = None

    # Tuning of our own (not in the contract): the event loop, batch size and wait of consumers.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    batch_size: int = Field(default=200, ge=1, le=5000)
    batch_wait_ms: int = Field(default=20, ge=0)
    # A message whose handling keeps failing on a transient error goes to <queue>.dead after this
    # many attempts (x-error-reason: retries_exhausted).
    max_retries: int = Field(default=10, ge=1)
    # Retries of one Nuvemshop request (429 and 5xx) before it counts as the API unavailable.
    nuvemshop_max_retries: int = Field(default=5, ge=0)
    # How long a webhook may wait for the broker's confirm before it is answered 503 (a broker
    # that confirms nothing at all for STALL_S is given up on sooner, see shared.messaging).
    webhook_queue_timeout_s: float = Field(default=2.5, gt=0, le=2.5)
    # A service whose outbox holds a row older than this is not ready (its broker is not taking
    # what it commits).
    outbox_max_age_s: float = Field(default=60.0, gt=0)
    # The demo runs with a generated key and says so; services refuse to start without one.
    demo_mode: bool = False

    @field_validator("sale_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as UTC)") from exc
        return value

    def public_url(self) -> str:
        """``PUBLIC_BASE_URL`` or the ingest port on localhost."""
        base = self.public_base_url or f"http://127.0.0.1:{self.ingest_http_port}"
        return base.rstrip("/")

    def http_port(self, service: str) -> int:
        """The HTTP port of one service by name."""
        ports = {
            "ingest": self.ingest_http_port,
            "mapper": self.mapper_http_port,
            "ledger": self.ledger_http_port,
        }
        return ports[service]
