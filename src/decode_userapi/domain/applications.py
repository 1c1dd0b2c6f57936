"""The application catalog: which containerised applications users may run, and how."""

from __future__ import annotations

from typing import Any

import msgspec

from decode_userapi.domain.errors import InvalidRequest
from decode_userapi.domain.jobs import MAX_ENV_VALUE, MAX_ENV_VARS, ApplicationSpec

# Input kinds a job names, and the folder of the user's tree each is read from.
INPUT_KINDS: dict[str, str] = {"config_id": "config", "data_ids": "data", "artifact_ids": "artifact"}
OUTPUT_KINDS: tuple[str, ...] = ("output", "log", "artifact")


class AppSection(msgspec.Struct, forbid_unknown_fields=True):
    cmd: list[str] = []
    env: list[str] = []


class HandlerSection(msgspec.Struct, forbid_unknown_fields=True):
    image_url: str
    files_down: dict[str, str] = {}
    files_up: dict[str, str] = {}

    def __post_init__(self) -> None:
        for key in self.files_down:
            if key not in INPUT_KINDS:
                raise ValueError(f"files_down key {key!r} is not one of {', '.join(INPUT_KINDS)}")
        for key in self.files_up:
            if key not in OUTPUT_KINDS:
                raise ValueError(f"files_up key {key!r} is not one of {', '.join(OUTPUT_KINDS)}")


class AwsResources(msgspec.Struct, forbid_unknown_fields=True):
    hardware: dict[str, Any] = {}
    timeout: int | None = None


class Entrypoint(msgspec.Struct, forbid_unknown_fields=True):
    app: AppSection
    handler: HandlerSection
    aws_resources: AwsResources = msgspec.field(default_factory=AwsResources)


Applications = dict[str, dict[str, dict[str, Entrypoint]]]


class CatalogError(ValueError):
    """An application config that cannot be used; the message names the bad key."""


class Catalog:
    """A decoded application config, with the document it came from (what clients are shown)."""

    __slots__ = ("applications", "document")

    def __init__(self, applications: Applications, document: dict[str, Any]) -> None:
        self.applications = applications
        self.document = document

    @classmethod
    def from_document(cls, document: Any) -> Catalog:
        """Decode a loaded YAML/JSON document; `CatalogError` names the offending key path."""
        if document is None:
            document = {}
        applications: Applications = {}
        for application, versions in _mapping(document, ""):
            for version, entrypoints in _mapping(versions, application):
                for name, entrypoint in _mapping(entrypoints, f"{application}.{version}"):
                    where = f"{application}.{version}.{name}"
                    try:
                        decoded = msgspec.convert(entrypoint, Entrypoint, str_keys=True)
                    except (msgspec.ValidationError, ValueError) as e:
                        message = str(e).replace("`$.", f"`{where}.").replace("`$`", f"`{where}`")
                        if f"`{where}" not in message:
                            message = f"{message} - at `{where}`"
                        raise CatalogError(f"invalid application config: {message}") from e
                    applications.setdefault(application, {}).setdefault(version, {})[name] = decoded
        return cls(applications, msgspec.to_builtins(document, str_keys=True))

    def resolve(self, spec: ApplicationSpec) -> Entrypoint:
        versions = self.applications.get(spec.application)
        if versions is None:
            raise InvalidRequest(f"unknown application {spec.application!r}")
        entrypoints = versions.get(spec.version)
        if entrypoints is None:
            raise InvalidRequest(f"application {spec.application!r} has no version {spec.version!r}")
        entrypoint = entrypoints.get(spec.entrypoint)
        if entrypoint is None:
            raise InvalidRequest(
                f"version {spec.version!r} of {spec.application!r} has no entrypoint {spec.entrypoint!r}"
            )
        return entrypoint


def _mapping(value: Any, where: str) -> list[tuple[str, Any]]:
    """The items of a mapping level of the config, or a `CatalogError` naming where it is not one."""
    if not isinstance(value, dict):
        place = f"`{where}`" if where else "the top level"
        raise CatalogError(f"invalid application config: expected a mapping at {place}, got {type(value).__name__}")
    return [(str(key), item) for key, item in value.items()]


def check_env_vars(entrypoint: Entrypoint, env_vars: dict[str, str]) -> dict[str, str]:
    """Only the entrypoint's declared variables may be set, within size limits."""
    if len(env_vars) > MAX_ENV_VARS:
        raise InvalidRequest(f"at most {MAX_ENV_VARS} env_vars may be set")
    allowed = set(entrypoint.app.env)
    for key, value in env_vars.items():
        if key not in allowed:
            raise InvalidRequest(
                f"env var {key!r} is not allowed for this entrypoint"
                + (f" (allowed: {', '.join(sorted(allowed))})" if allowed else " (it allows none)")
            )
        if len(value) > MAX_ENV_VALUE:
            raise InvalidRequest(f"env var {key!r} is longer than {MAX_ENV_VALUE} characters")
    return env_vars
