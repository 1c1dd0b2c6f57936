from pathlib import Path

import pytest
import yaml

from decode_userapi.domain.applications import Catalog, CatalogError, check_env_vars
from decode_userapi.domain.errors import InvalidRequest
from decode_userapi.domain.jobs import ApplicationSpec

SHIPPED = Path(__file__).resolve().parents[2] / "application_config.yaml"


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.from_document(yaml.safe_load(SHIPPED.read_text()))


def test_shipped_config_has_decode_and_comet(catalog):
    assert {"decode", "comet"} <= set(catalog.applications)
    train = catalog.resolve(ApplicationSpec("decode", "v0_10_1", "train"))
    assert train.handler.files_down == {"config_id": "config", "data_ids": "data", "artifact_ids": "artifact"}
    assert train.handler.files_up == {"log": "log", "artifact": "model"}
    assert catalog.document["decode"]["v0_10_1"]["train"]["aws_resources"]["timeout"] == 18000


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ApplicationSpec("nope", "v0_10_1", "train"), "unknown application"),
        (ApplicationSpec("decode", "v9", "train"), "no version"),
        (ApplicationSpec("decode", "v0_10_1", "dance"), "no entrypoint"),
    ],
)
def test_resolve_names_what_is_missing(catalog, spec, message):
    with pytest.raises(InvalidRequest, match=message):
        catalog.resolve(spec)


def test_env_vars_must_be_declared(catalog):
    comet = catalog.resolve(ApplicationSpec("comet", "v0_1_0", "correct_drift"))
    assert check_env_vars(comet, {"COMET_MAX_DRIFT": "5"}) == {"COMET_MAX_DRIFT": "5"}
    with pytest.raises(InvalidRequest, match="HOME"):
        check_env_vars(comet, {"HOME": "/"})


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"a": {"v": {"e": {"app": {"cmd": "not a list"}, "handler": {"image_url": "x"}}}}}, "cmd"),
        ({"a": {"v": {"e": {"app": {}, "handler": {}}}}}, "image_url"),
        ({"a": {"v": {"e": {"app": {}, "handler": {"image_url": "x", "files_down": {"bogus": "x"}}}}}}, "bogus"),
        ({"a": {"v": {"e": {"app": {}, "handler": {"image_url": "x"}, "typo": 1}}}}, "typo"),
        ({"a": ["not", "a", "mapping"]}, "`a`"),
        ({"a": {"v": {"e": {"app": {"cmd": ["x", 1]}, "handler": {"image_url": "x"}}}}}, "a.v.e.app.cmd"),
    ],
)
def test_bad_config_names_the_key(document, key):
    with pytest.raises(CatalogError) as info:
        Catalog.from_document(document)
    assert key in str(info.value)
