"""Where the web page may send requests (its CSP `connect-src`), by deployment."""

from __future__ import annotations

from decode_userapi.config import Settings
from decode_userapi.entrypoints.web import cognito_endpoint, connect_sources, ui_csp

COGNITO = {"cognito_user_pool_id": "eu-central-1_abc", "cognito_client_id": "client", "cognito_region": "eu-central-1"}


def test_the_embedded_default_talks_to_itself_only():
    assert connect_sources(Settings(), {}) == ["'self'"]
    assert cognito_endpoint(Settings(), {}) is None


def test_cognito_on_aws_and_on_an_emulator():
    settings = Settings(identity="cognito", **COGNITO)
    assert connect_sources(settings, {}) == ["'self'", "https://cognito-idp.eu-central-1.amazonaws.com"]
    assert cognito_endpoint(settings, {}) == "https://cognito-idp.eu-central-1.amazonaws.com/"
    local = {"AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": "http://127.0.0.1:5000/some/path"}
    assert connect_sources(settings, local) == ["'self'", "http://127.0.0.1:5000"]
    assert cognito_endpoint(settings, local) == "http://127.0.0.1:5000/some/path/"


def test_s3_uploads_go_to_the_bucket():
    settings = Settings(filesystem="s3", s3_bucket="lab-data", s3_region="eu-west-1")
    assert connect_sources(settings, {}) == [
        "'self'",
        "https://lab-data.s3.eu-west-1.amazonaws.com",
        "https://s3.eu-west-1.amazonaws.com",
    ]
    assert connect_sources(settings, {"AWS_ENDPOINT_URL": "http://minio.lab:9000"}) == ["'self'", "http://minio.lab:9000"]


def test_the_policy_allows_nothing_inline():
    policy = ui_csp(["'self'"])
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
