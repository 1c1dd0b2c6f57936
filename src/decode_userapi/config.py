"""Settings: read once from the environment (and a `.env` file), then frozen."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

DEFAULT_DATA_DIR = "decode-userapi-data"
PACKAGED_CONFIG = "application_config.yaml"


# The environment variable behind each setting (`decode-userapi config show` prints these names).
ENV_NAMES = {
    "data_dir": "DECODE_DATA_DIR",
    "auth": "AUTH",
    "filesystem": "FILESYSTEM",
    "user_data_root_path": "USER_DATA_ROOT_PATH",
    "s3_bucket": "S3_BUCKET",
    "s3_region": "S3_REGION",
    "database_url": "DATABASE_URL",
    "database_secret": "DATABASE_SECRET",
    "database_migrate_on_start": "DATABASE_MIGRATE_ON_START",
    "database_pool_size": "DATABASE_POOL_SIZE",
    "database_pool_timeout": "DATABASE_POOL_TIMEOUT_SECONDS",
    "workerfacing_api_url": "WORKERFACING_API_URL",
    "internal_api_key": "INTERNAL_API_KEY_SECRET",
    "identity": "COGNITO_USER_POOL_ID",  # not a variable of its own: cognito when the pool is set
    "cognito_client_id": "COGNITO_CLIENT_ID",
    "cognito_secret": "COGNITO_SECRET",
    "cognito_user_pool_id": "COGNITO_USER_POOL_ID",
    "cognito_region": "COGNITO_REGION",
    "cognito_jwks_url": "COGNITO_JWKS_URL",
    "token_signing_key": "TOKEN_SIGNING_KEY",
    "token_ttl_seconds": "TOKEN_TTL_SECONDS",
    "application_config_file": "APPLICATION_CONFIG_FILE",
    "email_sender_service": "EMAIL_SENDER_SERVICE",
    "email_sender_address": "EMAIL_SENDER_ADDRESS",
    "email_sender_api_key": "EMAIL_SENDER_API_KEY",
    "email_sender_secret_key": "EMAIL_SENDER_SECRET_KEY",
    "frontend_url": "FRONTEND_URL",
    "dispatch_max_delay_seconds": "DISPATCH_MAX_DELAY_SECONDS",
    "dispatch_give_up_seconds": "DISPATCH_GIVE_UP_SECONDS",
    "dispatch_lease_seconds": "DISPATCH_LEASE_SECONDS",
    "workerfacing_api_timeout_seconds": "WORKERFACING_API_TIMEOUT_SECONDS",
    "max_upload_bytes": "MAX_UPLOAD_BYTES",
    "max_json_bytes": "MAX_JSON_BYTES",
    "user_quota_bytes": "USER_QUOTA_BYTES",
    "max_listing_entries": "MAX_LISTING_ENTRIES",
    "token_rate_per_minute_user": "TOKEN_RATE_PER_MINUTE_USER",
    "token_rate_per_minute_address": "TOKEN_RATE_PER_MINUTE_ADDRESS",
    "stream_keep_alive_seconds": "STREAM_KEEP_ALIVE_SECONDS",
    "job_event_retention_days": "JOB_EVENT_RETENTION_DAYS",
}
# Read outside `Settings`: by `configure_logging`, and by the AWS SDK itself (endpoints, credentials).
LOGGING_ENV = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "console"}  # name: default
AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
AWS_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY",)


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


def _flag(value: str | None, name: str) -> bool | None:
    if value is None or value.strip() == "":
        return None
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1/0, true/false, yes/no or on/off, not {value!r}")


def _int(value: str | None, name: str, default: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {value!r}") from None


def default_application_config() -> str:
    """The shipped application config: inside the installed package, or at the source checkout's root."""
    packaged = Path(__file__).with_name(PACKAGED_CONFIG)
    if packaged.is_file():
        return str(packaged)
    return str(Path(__file__).resolve().parents[2] / PACKAGED_CONFIG)


DATABASE_SCHEMES = ("sqlite:", "sqlite+aiosqlite:", "postgresql:", "postgres:", "postgresql+asyncpg:")


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting the service reads. `Settings.from_env()` builds it; tests build it directly."""

    data_dir: str = DEFAULT_DATA_DIR
    auth: bool = True
    filesystem: Literal["local", "s3"] = "local"
    user_data_root_path: str = f"{DEFAULT_DATA_DIR}/user_data"
    s3_bucket: str | None = None
    s3_region: str | None = None
    database_url: str = f"sqlite:///{DEFAULT_DATA_DIR}/userapi.db"  # `{}` stands for database_secret
    database_secret: str | None = None
    database_migrate_on_start: bool = True
    database_pool_size: int = 10
    database_pool_timeout: int = 30
    workerfacing_api_url: str = "http://127.0.0.1:8001"
    internal_api_key: str | None = None
    identity: Literal["builtin", "cognito"] = "builtin"
    cognito_client_id: str | None = None
    cognito_secret: str | None = None
    cognito_user_pool_id: str | None = None
    cognito_region: str | None = None
    cognito_jwks_url: str | None = None
    token_signing_key: str | None = None
    token_ttl_seconds: int = 3600
    application_config_file: str = msgspec.field(default_factory=default_application_config)
    email_sender_service: Literal["mailjet", ""] = ""
    email_sender_address: str | None = None
    email_sender_api_key: str | None = None
    email_sender_secret_key: str | None = None
    frontend_url: str | None = None
    dispatch_max_delay_seconds: float = 300.0
    dispatch_give_up_seconds: float = 24 * 3600.0
    dispatch_lease_seconds: float = 60.0
    workerfacing_api_timeout_seconds: float = 10.0
    max_upload_bytes: int = 10 * 1024**3
    max_json_bytes: int = 1024**2
    user_quota_bytes: int = 0
    max_listing_entries: int = 1_000_000  # files and folders one listing or folder download may walk
    token_rate_per_minute_user: int = 10  # POST /token and /login attempts per username; 0: no limit
    token_rate_per_minute_address: int = 30  # ... per client address; 0: no limit
    # A quiet GET /jobs/events/stream sends a comment this often (proxies close idle connections),
    # and checks that the caller's token is still valid.
    stream_keep_alive_seconds: float = 15.0
    # Job events older than this are pruned (hourly, by every replica): a job's history, and the
    # `delete` event a deleted job leaves, are kept this long. 0: kept forever.
    job_event_retention_days: int = 30

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """Settings that may be given as a value, Secrets Manager JSON, or a Secrets Manager ARN."""
        return (
            "database_secret",
            "internal_api_key",
            "cognito_secret",
            "email_sender_api_key",
            "email_sender_secret_key",
            "token_signing_key",
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: str | None = ".env") -> Settings:
        """Settings from `environ` (default: the process environment) over a `.env` file, if any."""
        values: dict[str, str] = {}
        if env_file and Path(env_file).is_file():
            from dotenv import dotenv_values

            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = values.get(name)
            return value if value not in (None, "") else None

        data_dir = get("DECODE_DATA_DIR") or DEFAULT_DATA_DIR
        identity = "cognito" if get("COGNITO_USER_POOL_ID") else "builtin"
        auth = _flag(get("AUTH"), "AUTH")
        filesystem = (get("FILESYSTEM") or "local").lower()
        if filesystem not in ("local", "s3"):
            raise SettingsError(f"FILESYSTEM must be local or s3, not {filesystem!r}")
        database_url = get("DATABASE_URL") or f"sqlite:///{data_dir}/userapi.db"
        migrate = _flag(get("DATABASE_MIGRATE_ON_START"), "DATABASE_MIGRATE_ON_START")
        email_service = (get("EMAIL_SENDER_SERVICE") or "").lower()
        if email_service not in ("mailjet", ""):
            raise SettingsError(f"EMAIL_SENDER_SERVICE must be mailjet or empty, not {email_service!r}")
        settings = cls(
            data_dir=data_dir,
            # The account endpoints are on by default only with the built-in identity provider.
            auth=auth if auth is not None else identity == "builtin",
            filesystem=filesystem,  # type: ignore[arg-type]
            user_data_root_path=get("USER_DATA_ROOT_PATH")
            or (f"{data_dir}/user_data" if filesystem == "local" else "user_data"),
            s3_bucket=get("S3_BUCKET"),
            s3_region=get("S3_REGION"),
            database_url=database_url,
            database_secret=get("DATABASE_SECRET"),
            database_migrate_on_start=True if migrate is None else migrate,
            database_pool_size=_int(get("DATABASE_POOL_SIZE"), "DATABASE_POOL_SIZE", 10),
            database_pool_timeout=_int(get("DATABASE_POOL_TIMEOUT_SECONDS"), "DATABASE_POOL_TIMEOUT_SECONDS", 30),
            workerfacing_api_url=(get("WORKERFACING_API_URL") or "http://127.0.0.1:8001").rstrip("/"),
            internal_api_key=get("INTERNAL_API_KEY_SECRET"),
            identity=identity,  # type: ignore[arg-type]
            cognito_client_id=get("COGNITO_CLIENT_ID"),
            cognito_secret=get("COGNITO_SECRET"),
            cognito_user_pool_id=get("COGNITO_USER_POOL_ID"),
            cognito_region=get("COGNITO_REGION"),
            cognito_jwks_url=get("COGNITO_JWKS_URL"),
            token_signing_key=get("TOKEN_SIGNING_KEY"),
            token_ttl_seconds=_int(get("TOKEN_TTL_SECONDS"), "TOKEN_TTL_SECONDS", 3600),
            application_config_file=get("APPLICATION_CONFIG_FILE") or default_application_config(),
            email_sender_service=email_service,  # type: ignore[arg-type]
            email_sender_address=get("EMAIL_SENDER_ADDRESS"),
            email_sender_api_key=get("EMAIL_SENDER_API_KEY"),
            email_sender_secret_key=get("EMAIL_SENDER_SECRET_KEY"),
            frontend_url=get("FRONTEND_URL"),
            dispatch_max_delay_seconds=_int(get("DISPATCH_MAX_DELAY_SECONDS"), "DISPATCH_MAX_DELAY_SECONDS", 300),
            dispatch_give_up_seconds=_int(get("DISPATCH_GIVE_UP_SECONDS"), "DISPATCH_GIVE_UP_SECONDS", 86400),
            dispatch_lease_seconds=_int(get("DISPATCH_LEASE_SECONDS"), "DISPATCH_LEASE_SECONDS", 60),
            workerfacing_api_timeout_seconds=_int(
                get("WORKERFACING_API_TIMEOUT_SECONDS"), "WORKERFACING_API_TIMEOUT_SECONDS", 10
            ),
            max_upload_bytes=_int(get("MAX_UPLOAD_BYTES"), "MAX_UPLOAD_BYTES", 10 * 1024**3),
            max_json_bytes=_int(get("MAX_JSON_BYTES"), "MAX_JSON_BYTES", 1024**2),
            user_quota_bytes=_int(get("USER_QUOTA_BYTES"), "USER_QUOTA_BYTES", 0),
            max_listing_entries=_int(get("MAX_LISTING_ENTRIES"), "MAX_LISTING_ENTRIES", 1_000_000),
            token_rate_per_minute_user=_int(get("TOKEN_RATE_PER_MINUTE_USER"), "TOKEN_RATE_PER_MINUTE_USER", 10),
            token_rate_per_minute_address=_int(
                get("TOKEN_RATE_PER_MINUTE_ADDRESS"), "TOKEN_RATE_PER_MINUTE_ADDRESS", 30
            ),
            stream_keep_alive_seconds=_int(get("STREAM_KEEP_ALIVE_SECONDS"), "STREAM_KEEP_ALIVE_SECONDS", 15),
            job_event_retention_days=_int(get("JOB_EVENT_RETENTION_DAYS"), "JOB_EVENT_RETENTION_DAYS", 30),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.stream_keep_alive_seconds <= 0:
            raise SettingsError("STREAM_KEEP_ALIVE_SECONDS must be more than 0")
        if self.job_event_retention_days < 0:
            raise SettingsError("JOB_EVENT_RETENTION_DAYS must be 0 (keep forever) or more")
        if self.max_listing_entries < 1:
            raise SettingsError("MAX_LISTING_ENTRIES must be 1 or more")
        if self.dispatch_lease_seconds <= self.workerfacing_api_timeout_seconds:
            raise SettingsError(
                "DISPATCH_LEASE_SECONDS must be longer than WORKERFACING_API_TIMEOUT_SECONDS, or a job "
                "still being delivered could be sent again by another replica"
            )
        if not self.database_url.startswith(DATABASE_SCHEMES):
            raise SettingsError("DATABASE_URL must start with sqlite:/// or postgresql://")
        if "{}" in self.database_url and not self.database_secret:
            raise SettingsError("DATABASE_URL has a {} placeholder but DATABASE_SECRET is not set")
        if self.filesystem == "s3" and not self.s3_bucket:
            raise SettingsError("FILESYSTEM=s3 needs S3_BUCKET")
        if self.identity == "cognito" and not (self.cognito_client_id and self.cognito_region):
            raise SettingsError("COGNITO_USER_POOL_ID needs COGNITO_CLIENT_ID and COGNITO_REGION")
        if self.email_sender_service == "mailjet" and not (
            self.email_sender_address and self.email_sender_api_key and self.email_sender_secret_key
        ):
            raise SettingsError(
                "EMAIL_SENDER_SERVICE=mailjet needs EMAIL_SENDER_ADDRESS, EMAIL_SENDER_API_KEY "
                "and EMAIL_SENDER_SECRET_KEY"
            )
