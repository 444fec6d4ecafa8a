"""One settings class for every process, read from ``HYOJUNKA_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from readmodel.outbound import OutboundPolicy, parse_allow
from workflows.ladder import EscalationLadder

# Passwords of examples and images' defaults: refused outside development.
DEFAULT_PASSWORDS = frozenset(
    {"", "hyojunka", "postgres", "temporal", "password", "changethis", "change_me", "secret"}
)

# The most worker processes ``hyojunka up`` starts by default, however many cores there are.
MAX_DEFAULT_WORKERS = 4


def default_workers(cores: int | None = None) -> int:
    """How many worker processes ``hyojunka up`` runs unless told (``HYOJUNKA_WORKERS``).

    One on a machine of two cores or fewer: the API and the Temporal dev server need the
    other core, and a second worker there only competes with them. Otherwise one a core but
    one (left to the API and the dev server), at most ``MAX_DEFAULT_WORKERS``: past that the
    one dev server (one SQLite file, one task-queue partition) is what every worker waits
    on, while each worker still costs its own workflow cache in memory. The cores counted
    are those this process may run on (its CPU affinity), not the whole machine's."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(cores - 1, MAX_DEFAULT_WORKERS)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HYOJUNKA_", extra="ignore")

    environment: str = "development"  # development | production
    data_dir: Path = Path(".hyojunka-data")
    database_url: str | None = None  # default: SQLite file in data_dir
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    # A production Temporal: TLS (a cluster with mTLS or Temporal Cloud) and an API key.
    # TLS is on when asked for, when any file below is given, or with an API key.
    temporal_tls: bool = False
    temporal_tls_ca: Path | None = None  # PEM of the server's CA; default: the system's roots
    temporal_tls_cert: Path | None = None  # client certificate (PEM), with temporal_tls_key
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str = ""  # when the certificate names another host
    temporal_api_key: SecretStr = SecretStr("")
    task_queue: str = "migrations"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    temporal_ui_port: int = 8233
    public_url: str = "http://127.0.0.1:8000"
    # Escalation ladder, in working days (defaults: the ladder's own).
    reminder_days_before: int = EscalationLadder.reminder_days_before
    approver_days_after: int = EscalationLadder.approver_days_after
    prefecture_days_after: int = EscalationLadder.prefecture_days_after
    # The largest request body accepted (bytes); larger ones get 413 before being read.
    max_body_bytes: int = 1_048_576
    # The bulk milestone feed's (up to 5,000 items with their notes).
    max_bulk_body_bytes: int = 16_777_216
    # Requests under /api/ per token, and per client address for those without one, in the
    # ``limits`` package's notation ("50/second;1500/minute"); past them, 429 with Retry-After.
    # Empty: no limit. Counted per API process unless rate_limit_storage names a shared store.
    rate_limit_per_token: str = "50/second;1500/minute"
    rate_limit_per_address: str = "20/second;600/minute"
    rate_limit_storage: str = "async+memory://"
    # The pages, per client address: signing in (each attempt a token lookup), and every
    # other form they post (a bulk acknowledgement is hundreds of workflow updates). Reading
    # a page is not limited.
    rate_limit_sign_in_per_address: str = "30/minute;600/hour"
    rate_limit_page_forms_per_address: str = "10/second;300/minute"
    # The proxies (addresses or CIDRs, comma-separated; "*" for any) whose X-Forwarded-For
    # and X-Forwarded-Proto the API believes: behind an ingress or a reverse proxy, its
    # addresses, or every client is the proxy's one address to the limits and the logs.
    # Empty: none (the API is reached directly; a client's own header is ignored).
    forwarded_allow_ips: str = ""
    # Signs the pages' CSRF cookie. Required in production (shared by every API process);
    # in development each process makes its own when it is left empty.
    secret_key: str = ""
    # How long a browser stays signed in (hours); signing out ends it sooner.
    page_session_hours: float = 8.0
    # Deployment-wide notification channels: a JSON list of {"id", "kind", "url"}.
    channels: str = "[]"
    # Private ranges notifications may go to, as comma-separated CIDRs (e.g. a closed
    # network's (LGWAN) own receivers: "10.20.0.0/16"). Empty: public addresses only.
    outbound_allow: str = ""
    log_json: bool | None = None  # default: JSON unless stderr is a terminal
    # Read-model connections per process. A request never holds one across a Temporal call,
    # so a handful serve many concurrent writers; past pool_timeout the answer is 503.
    # Connections are kept, not made per request (a new SQLite connection costs more than
    # the query): no overflow beyond the pool by default.
    db_pool_size: int = 20
    db_max_overflow: int = 0
    db_pool_timeout: float = 5.0
    # Every call from the API to Temporal has this deadline (seconds); past it, 503.
    temporal_call_timeout: float = 10.0
    retry_after_seconds: int = 2
    # Creations an import keeps in flight to Temporal at once (each an Update-with-Start
    # that returns once the worker has projected it): enough to keep the worker busy, few
    # enough that none waits past temporal_call_timeout.
    import_concurrency: int = 16
    # Updates one API process keeps in flight to one workflow; the rest wait their turn in
    # the API. Temporal refuses more than 10 per workflow by default
    # (history.maxInFlightUpdates) and its client then backs off for seconds.
    updates_per_workflow: int = 8
    # Worker tuning (see benchmarks.load and the README for how they were chosen).
    # benchmarks.wave: a 09:00 wave larger than the cache replays every evicted project
    # (about 24 ms of CPU each); a cached project costs about 165 KiB. Raise the cache toward
    # the largest wave a worker takes as memory allows, or add a worker.
    worker_max_cached_workflows: int = 2000
    worker_max_concurrent_workflow_tasks: int = 100
    worker_max_concurrent_local_activities: int = 100
    worker_max_concurrent_activities: int = 100
    # How long a workflow task waits for the worker that has the workflow cached before any
    # worker may take it. Short, so a worker that was killed stalls its workflows briefly.
    worker_sticky_timeout: float = 2.0
    # How long a wave's escalation notices gather before one message per body and audience
    # goes out (rungs fire at 09:00 JST in every project at once). Five minutes: a wave of
    # 5,000 rungs took 3-4.5 minutes to drain on a shared 2-core machine (benchmarks.wave),
    # and a notice arriving after its digest has gone starts another message.
    notification_digest_seconds: float = 300.0
    # Mail: notices to people, invitations and sign-in links. smtp://host:port,
    # smtp+starttls://user:password@host:587 or smtps://user:password@host:465; empty: every
    # message is written to mail_dir (a Maildir; default data_dir/mail) instead of sent.
    smtp_url: SecretStr = SecretStr("")
    mail_from: str = "hyojunka <noreply@hyojunka.localhost>"
    mail_dir: Path | None = None
    # Sign-in through the body's or prefecture's OpenID provider (authorization code with
    # PKCE); empty issuer: not offered. The redirect URI is {public_url}/login/oidc/callback.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_label: str = "所属団体のアカウントでログイン"
    # How long a mailed sign-in link and an invitation's link stay valid.
    sign_in_link_minutes: float = 15.0
    invitation_link_days: float = 7.0
    # Where the worker serves Prometheus metrics ("127.0.0.1:9464"); empty: not served.
    worker_metrics_address: str = ""
    # Where the worker answers its probes, /healthz and /readyz ("0.0.0.0:8081"); empty: not.
    worker_health_address: str = ""
    # Worker processes `hyojunka up` supervises (`up --workers N` overrides it); they poll
    # the one task queue, so Temporal shares the work among them. Default: default_workers()
    # (1 on two cores or fewer, else cores - 1 up to 4). Under `up`, worker i (from 0) serves
    # its probes and metrics on the port of the two addresses above plus i. Each worker has
    # its own workflow cache and read-model pool (worker_max_cached_workflows, db_pool_size
    # are per process). `hyojunka worker` is always one process: scale it by running more.
    workers: int = Field(default_factory=default_workers, ge=1, le=64)

    @field_validator("environment")
    @classmethod
    def _known_environment(cls, value: str) -> str:
        if value not in ("development", "production"):
            raise ValueError("environment must be development or production")
        return value

    @model_validator(mode="after")
    def _production_needs_a_secret_key(self) -> Settings:
        if self.environment == "production" and len(self.secret_key) < 32:
            raise ValueError(
                "HYOJUNKA_SECRET_KEY (32 characters or more) is required in production"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_explicit_database(self) -> Settings:
        if self.environment == "production" and not self.database_url:
            raise ValueError("HYOJUNKA_DATABASE_URL is required in production")
        return self

    @model_validator(mode="after")
    def _production_refuses_default_passwords(self) -> Settings:
        if self.environment == "production" and self.database_url:
            from sqlalchemy.engine import make_url

            password = make_url(self.database_url).password
            if password is not None and str(password).lower() in DEFAULT_PASSWORDS:
                raise ValueError(
                    "HYOJUNKA_DATABASE_URL has a default password; set a real one in production"
                )
        return self

    @model_validator(mode="after")
    def _client_certificate_in_pairs(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("HYOJUNKA_TEMPORAL_TLS_CERT and _KEY are given together or not at all")
        return self

    @field_validator(
        "rate_limit_per_token",
        "rate_limit_per_address",
        "rate_limit_sign_in_per_address",
        "rate_limit_page_forms_per_address",
    )
    @classmethod
    def _limits_parse(cls, value: str) -> str:
        from limits import parse_many

        if value.strip():
            parse_many(value)  # raises ValueError on a notation it cannot read
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        import ipaddress

        for item in (i.strip() for i in value.split(",")):
            if item and item != "*":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError as exc:
                    raise ValueError(f"forwarded_allow_ips entry {item!r}: {exc}") from exc
        return value

    @field_validator("outbound_allow")
    @classmethod
    def _allow_is_cidrs(cls, value: str) -> str:
        parse_allow(value)
        return value

    @model_validator(mode="after")
    def _channels_are_http_and_allowed(self) -> Settings:
        from readmodel.channels import ChannelError, parse_channels

        try:
            parse_channels(self.channels, self.outbound_policy)
        except ChannelError as exc:
            raise ValueError(f"HYOJUNKA_CHANNELS: {exc}") from exc
        return self

    @property
    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy(parse_allow(self.outbound_allow))

    @property
    def ladder(self) -> EscalationLadder:
        """The ladder new projects are created with (each keeps its own for life)."""
        return EscalationLadder(
            self.reminder_days_before, self.approver_days_after, self.prefecture_days_after
        )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hyojunka.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
