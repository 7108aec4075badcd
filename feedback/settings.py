"""The one settings object of the platform.

Read at entry points only (`create_app`, the CLI, migrations, the Celery app) and passed down.
Every field can be set from the environment with the prefix `CHATDISTILL_` and `__` between a
section and its field, e.g. `CHATDISTILL_DATABASE__URL=postgresql+psycopg://...`.

Embedded default: a SQLite file in the data folder, no Redis, rate limits kept in process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feedback.loop_settings import CanarySettings, MonitorSettings, WorkerSettings
from feedback.secret_file import read_or_create_secret


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Empty: a SQLite file `chatdistill.db` in the data folder.",
    )
    echo: bool = Field(default=False, description="Log every SQL statement (debugging only).")
    pool_size: int = Field(default=10, ge=1, le=200, description="Connections kept per process.")
    max_overflow: int = Field(default=10, ge=0, le=200, description="Extra connections at peaks.")

    @field_validator("url")
    @classmethod
    def _known_dialect(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql", "sqlite")):
            raise ValueError(
                "database.url must be a PostgreSQL or SQLite SQLAlchemy URL, e.g. "
                "postgresql+psycopg://user@host/db or sqlite:///path/to/file.db"
            )
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # psycopg 3 is the driver we install; make the plain form work too.
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value


class RedisSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="Redis URL for rate limits, Celery and promotion events. Empty: in process.",
    )
    key_prefix: str = Field(
        default="chatdistill:", max_length=100, description="Prefix of every Redis key we write."
    )


class ApiSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Interface `chatdistill serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `chatdistill serve` binds.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the widget API from a browser."
    )
    max_message_chars: int = Field(
        default=2000, ge=1, le=100_000, description="Longest customer message accepted (422)."
    )
    max_comment_chars: int = Field(
        default=1000, ge=1, le=100_000, description="Longest rating comment accepted (422)."
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request body accepted (413)."
    )
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Proxies in front of the API that append to X-Forwarded-For. 0: the TCP "
        "peer is the client and the header is ignored; N: the client is the N-th entry from "
        "the right (the peer when the header has fewer). Set it only when every request "
        "passes through those proxies.",
    )
    docs: bool | None = Field(
        default=None,
        description="Serve the interactive API docs at /docs and /redoc (Swagger UI and ReDoc, "
        "which load their scripts from a CDN). Empty: on, except when `environment` is "
        "`production`. /openapi.json is always served.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_trust_forwarded_for(cls, data: Any) -> Any:
        if isinstance(data, dict) and "trust_forwarded_for" in data:
            raise ValueError(
                "api.trust_forwarded_for was replaced by api.trusted_proxy_hops (it trusted the "
                "leftmost X-Forwarded-For entry, which the client writes): remove it and set "
                "CHATDISTILL_API__TRUSTED_PROXY_HOPS to the number of proxies in front of the "
                "API (1 behind one ingress or load balancer, 0 without a proxy)"
            )
        return data


class AuthSettings(BaseModel):
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key that signs widget tokens. Empty: generated once and kept in "
            "`<data_dir>/secret.key`. Set it explicitly when several API processes run."
        ),
    )
    widget_token_ttl_hours: int = Field(
        default=24 * 7, ge=1, description="Lifetime of a widget conversation token."
    )
    operator_token_ttl_minutes: int = Field(
        default=12 * 60, ge=1, description="Lifetime of an operator bearer token."
    )
    min_password_length: int = Field(default=12, ge=8, description="Operator password minimum.")
    login_lockout_threshold: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Consecutive wrong passwords after which an account is locked (any IP).",
    )
    login_lockout_seconds: float = Field(
        default=60.0,
        gt=0.0,
        description="First lock; each further wrong password after a lock doubles it.",
    )
    login_lockout_max_seconds: float = Field(
        default=3600.0, gt=0.0, description="Longest lock, however many wrong passwords."
    )

    @model_validator(mode="after")
    def _lockout_cap_above_first(self) -> AuthSettings:
        if self.login_lockout_max_seconds < self.login_lockout_seconds:
            raise ValueError(
                "auth.login_lockout_max_seconds must be at least auth.login_lockout_seconds "
                f"({self.login_lockout_seconds}); raise it or lower the first lock"
            )
        return self


class RateLimitSettings(BaseModel):
    enabled: bool = Field(default=True, description="Turn every rate limit on or off.")
    per_ip_per_minute: int = Field(
        default=120, ge=1, description="Widget requests per client IP per minute."
    )
    per_conversation_per_minute: int = Field(
        default=30, ge=1, description="Widget writes per conversation per minute."
    )
    conversations_per_ip_per_hour: int = Field(
        default=60, ge=1, description="New conversations per client IP per hour."
    )
    logins_per_ip_per_minute: int = Field(
        default=10, ge=1, description="Operator login attempts per client IP per minute."
    )
    per_api_key_per_minute: int = Field(
        default=600, ge=1, description="OpenAI-compatible API requests per API key per minute."
    )


class DecodingOverrides(BaseModel):
    """Serving overrides of a bundle's decoding controls (`bundle_runtime.decoding`); unset
    fields keep the bundle manifest's value."""

    no_repeat_ngram: int | None = Field(
        default=None, ge=0, le=16, description="Ban repeating any n-gram of this size (0: off)."
    )
    repetition_penalty: float | None = Field(
        default=None, ge=1.0, le=10.0, description="Penalty on tokens already said (1.0: off)."
    )
    min_new_tokens: int | None = Field(
        default=None, ge=0, le=64, description="No end of reply before this many tokens."
    )
    repeat_window: int | None = Field(
        default=None,
        ge=0,
        le=4096,
        description="The n-gram ban and the penalty look at the last this many tokens (0: all).",
    )


class ServingSettings(BaseModel):
    bundle_dir: Path | None = Field(
        default=None,
        description="Serve this bundle folder instead of the registry's production model.",
    )
    precision: Literal["auto", "fp32", "int8"] = Field(
        default="auto", description="ONNX graphs to run; auto takes INT8 when the bundle has it."
    )
    intra_op_threads: int = Field(
        default=1, ge=1, le=64, description="ONNX Runtime threads inside one operator."
    )
    inter_op_threads: int = Field(
        default=1, ge=1, le=64, description="ONNX Runtime threads across operators."
    )
    handoff_threshold: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Override the bundle's handoff threshold: a message whose handoff score is "
        "under it goes to a human. In the units of handoff_score (a probability for "
        "max-softmax).",
    )
    handoff_score: Literal["max-softmax", "energy"] = Field(
        default="max-softmax",
        description="The score handoff_threshold is compared with, when it is set (a bundle's "
        "own threshold comes with its own score): max-softmax, the predicted intent's "
        "probability, or energy, in logit units (`bundle_runtime.handoff_score`).",
    )
    guard_min_reward: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Override the bundle's guard threshold: a generated reply whose reward is "
        "below it is replaced by the intent's approved answer (or handed off). 0: off.",
    )
    decoding: DecodingOverrides = Field(
        default_factory=DecodingOverrides,
        description="Override the bundle's decoding controls (repetition, minimum length).",
    )
    provider: Literal["cpu", "cuda", "tensorrt"] = Field(
        default="cpu",
        description="cpu: ONNX Runtime CPU; cuda: ONNX Runtime CUDA (onnxruntime-gpu); "
        "tensorrt: TensorRT FP16 engines built from the bundle's graphs (needs tensorrt).",
    )
    batching: Literal["continuous", "static", "single"] = Field(
        default="continuous",
        description="continuous: requests join and leave between decode steps; static: "
        "fixed-window batches run to completion; single: one request at a time.",
    )
    max_batch: int = Field(default=32, ge=1, le=1024, description="Most rows in one step.")
    max_queue: int = Field(
        default=256, ge=1, description="Waiting requests beyond this answer 503 (Retry-After)."
    )
    latency_target_ms: float = Field(
        default=1000.0, gt=0, description="Reply latency the batch size adapts to meet."
    )
    max_wait_ms: float = Field(
        default=5.0, ge=0, description="Longest a request waits for companions when idle."
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Deadline of one reply; later it fails with 503."
    )

    @model_validator(mode="after")
    def _threshold_fits_score(self) -> ServingSettings:
        threshold = self.handoff_threshold
        probability = self.handoff_score == "max-softmax"
        if probability and threshold is not None and not 0 <= threshold <= 1:
            raise ValueError(
                "serving.handoff_threshold is a probability with the max-softmax score: "
                f"between 0 and 1, got {threshold} (set serving.handoff_score=energy for a "
                "threshold in logit units)"
            )
        return self


class EventsSettings(BaseModel):
    """How API processes learn that an alias moved: Redis pub/sub, and polling as the fallback."""

    channel: str = Field(
        default="events:model",
        max_length=100,
        description="Pub/sub channel of model changes (after the Redis key prefix).",
    )
    poll_interval_s: float = Field(
        default=15.0,
        gt=0.0,
        le=3600.0,
        description="Seconds between reads of the aliases from the store (missed events).",
    )


class LiveSettings(BaseModel):
    """Live streams (`chat_api.live`): the widget's and the operators' server-sent events. With
    Redis, every API process hears every change at once; without it, a stream re-reads the
    store every `poll_interval_s` (changes made in its own process wake it at once)."""

    poll_interval_s: float = Field(
        default=1.0,
        gt=0.0,
        le=60.0,
        description="Seconds between a live stream's reads of the store when Redis is not "
        "configured or its subscription is down.",
    )
    keepalive_s: float = Field(
        default=15.0,
        gt=0.0,
        le=300.0,
        description="A live stream with nothing to send writes a comment this often, so that "
        "proxies keep the connection open.",
    )


class HandoffSettings(BaseModel):
    """A company's own tools told of each new handoff (`chat_api.handoff_webhook`): a signed
    POST when a conversation enters the operators' queue."""

    webhook_url: str | None = Field(
        default=None,
        description="http(s) URL that receives `conversation.waiting` events; empty: none.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key that signs each body (at least 16 characters); "
        "required with a URL.",
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0.0, le=60.0, description="Per attempt.")
    webhook_attempts: int = Field(
        default=4, ge=1, le=10, description="Tries per event (backoff 0.5 s, 1 s, 2 s, ...)."
    )

    @model_validator(mode="after")
    def _secret_with_url(self) -> HandoffSettings:
        if not self.webhook_url:
            return self
        if not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError("handoff.webhook_url must be an http:// or https:// URL")
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
        if len(secret) < 16:
            raise ValueError(
                "handoff.webhook_secret must be set (at least 16 characters) with a webhook "
                "URL: receivers check each body's signature with it"
            )
        return self


class Settings(BaseSettings):
    """Everything configurable about the platform, with embedded defaults."""

    model_config = SettingsConfigDict(
        env_prefix="CHATDISTILL_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    data_dir: Path = Field(
        default=Path("data"), description="Folder for the SQLite file, secrets and bundles."
    )
    environment: str = Field(
        default="development", description="Free-form name shown in logs and /healthz."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)

    @property
    def database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'chatdistill.db').resolve()}"

    @property
    def serve_docs(self) -> bool:
        """Whether /docs and /redoc are served (`api.docs`, default off in production)."""
        if self.api.docs is not None:
            return self.api.docs
        return self.environment != "production"

    @property
    def bundles_dir(self) -> Path:
        return self.data_dir / "bundles"

    def widget_signing_key(self) -> bytes:
        """The key for widget tokens: configured, or generated once into the data folder."""
        if self.auth.secret_key is not None:
            return self.auth.secret_key.get_secret_value().encode()
        return read_or_create_secret(self.data_dir / "secret.key")
