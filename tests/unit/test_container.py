"""Settings choose the adapters (wiring only: nothing is started, nothing touches the network)."""

from __future__ import annotations

from decode_userapi.adapters.catalog.s3 import S3CatalogSource
from decode_userapi.adapters.catalog.yaml_file import YamlFileCatalogSource
from decode_userapi.adapters.email.log import LogEmailSender
from decode_userapi.adapters.email.mailjet import MailjetEmailSender
from decode_userapi.adapters.identity.builtin import BuiltinIdentityProvider
from decode_userapi.adapters.identity.cognito import CognitoIdentityProvider
from decode_userapi.adapters.storage.local import LocalFileStorage
from decode_userapi.adapters.storage.s3 import S3FileStorage
from decode_userapi.config import Settings
from decode_userapi.container import build_services


def test_embedded_default():
    adapters = build_services(Settings(token_signing_key="k" * 40)).adapters
    assert isinstance(adapters.file_storage(), LocalFileStorage)
    assert isinstance(adapters.identity(), BuiltinIdentityProvider)
    assert isinstance(adapters.catalog(), YamlFileCatalogSource)
    assert isinstance(adapters.email_sender()._sender, LogEmailSender)


def test_production_choices():
    settings = Settings.from_env(
        {
            "FILESYSTEM": "s3",
            "S3_BUCKET": "lab-data",
            "DATABASE_URL": "postgresql://app:{}@db/userapi",
            "DATABASE_SECRET": "pw",
            "COGNITO_USER_POOL_ID": "eu-central-1_abc",
            "COGNITO_CLIENT_ID": "client",
            "COGNITO_REGION": "eu-central-1",
            "APPLICATION_CONFIG_FILE": "s3://lab-config/application_config.yaml",
            "EMAIL_SENDER_SERVICE": "mailjet",
            "EMAIL_SENDER_ADDRESS": "noreply@example.org",
            "EMAIL_SENDER_API_KEY": "key",
            "EMAIL_SENDER_SECRET_KEY": "secret",
        },
        env_file=None,
    )
    assert settings.auth is False and settings.user_data_root_path == "user_data"
    services = build_services(settings)
    adapters = services.adapters
    assert isinstance(adapters.file_storage(), S3FileStorage)
    assert isinstance(adapters.identity(), CognitoIdentityProvider)
    assert isinstance(adapters.catalog(), S3CatalogSource)
    assert isinstance(adapters.email_sender()._sender, MailjetEmailSender)
    assert str(adapters.database().url).startswith("postgresql+asyncpg://app:")
