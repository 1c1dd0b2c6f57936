"""`config show` names each setting by its environment variable: every name must be the one read."""

from __future__ import annotations

import msgspec
import pytest

from decode_userapi.config import ENV_NAMES, Settings, SettingsError

# A value for each variable that differs from its default and passes validation.
SAMPLES = {
    "DECODE_DATA_DIR": "/srv/decode",
    "AUTH": "1",  # the default with Cognito is off
    "FILESYSTEM": "s3",
    "USER_DATA_ROOT_PATH": "trees",
    "S3_BUCKET": "bucket-1",
    "S3_REGION": "eu-central-1",
    "DATABASE_URL": "postgresql://app:{}@db/userapi",
    "DATABASE_SECRET": "pw",
    "DATABASE_MIGRATE_ON_START": "0",
    "DATABASE_POOL_SIZE": "3",
    "DATABASE_POOL_TIMEOUT_SECONDS": "7",
    "WORKERFACING_API_URL": "http://workers:9000",
    "INTERNAL_API_KEY_SECRET": "key",
    "COGNITO_CLIENT_ID": "client",
    "COGNITO_SECRET": "secret",
    "COGNITO_USER_POOL_ID": "pool",
    "COGNITO_REGION": "eu-west-1",
    "COGNITO_JWKS_URL": "http://jwks",
    "TOKEN_SIGNING_KEY": "signing",
    "TOKEN_TTL_SECONDS": "60",
    "APPLICATION_CONFIG_FILE": "s3://b/apps.yaml",
    "EMAIL_SENDER_SERVICE": "mailjet",
    "EMAIL_SENDER_ADDRESS": "lab@example.org",
    "EMAIL_SENDER_API_KEY": "k",
    "EMAIL_SENDER_SECRET_KEY": "s",
    "FRONTEND_URL": "https://lab.example.org",
    "DISPATCH_MAX_DELAY_SECONDS": "17",
    "DISPATCH_GIVE_UP_SECONDS": "99",
    "DISPATCH_LEASE_SECONDS": "61",
    "WORKERFACING_API_TIMEOUT_SECONDS": "11",
    "MAX_UPLOAD_BYTES": "5",
    "MAX_JSON_BYTES": "6",
    "USER_QUOTA_BYTES": "8",
    "MAX_LISTING_ENTRIES": "9",
    "TOKEN_RATE_PER_MINUTE_USER": "2",
    "TOKEN_RATE_PER_MINUTE_ADDRESS": "4",
    "STREAM_KEEP_ALIVE_SECONDS": "3",
    "JOB_EVENT_RETENTION_DAYS": "7",
}


def test_every_setting_has_an_environment_variable():
    assert set(ENV_NAMES) == {field.name for field in msgspec.structs.fields(Settings)}


@pytest.mark.parametrize("field", sorted(ENV_NAMES))
def test_the_named_variable_is_the_one_read(field):
    name = ENV_NAMES[field]
    everything = Settings.from_env(SAMPLES, env_file=None)
    try:
        without = Settings.from_env({k: v for k, v in SAMPLES.items() if k != name}, env_file=None)
    except SettingsError as e:  # another setting needs it: read, and named in the refusal
        assert name in str(e)  # noqa: PT017 - one outcome of two, both checked
    else:
        assert getattr(everything, field) != getattr(without, field), name
