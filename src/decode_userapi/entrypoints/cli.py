"""`decode-userapi`: serve the API, migrate its database, or check an application config."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from decode_userapi.adapters.secrets import SecretError
from decode_userapi.config import Settings, SettingsError


def _describe_database(url: str) -> str:
    """The database, without credentials: a SQLite file's absolute path, or a server's host."""
    if url.startswith("sqlite"):
        return f"SQLite {Path(url.split(':///', 1)[-1]).resolve()}"
    return f"PostgreSQL {url.rsplit('@', 1)[-1]}"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from decode_userapi.container import build_services
    from decode_userapi.entrypoints.http.app import create_app
    from decode_userapi.logging import configure_logging

    configure_logging()
    settings = Settings.from_env()
    app = create_app(build_services(settings))
    base = f"http://{args.host}:{args.port}"
    print(f"decode-userapi on {base}  (docs: {base}/docs)")
    files = (
        f"s3://{settings.s3_bucket}/{settings.user_data_root_path.strip('/')}"
        if settings.filesystem == "s3"
        else str(Path(settings.user_data_root_path).resolve())
    )
    print(f"  user files: {files}")
    print(f"  database:   {_describe_database(settings.database_url)}")
    print(f"  worker-facing API expected at {settings.workerfacing_api_url}")
    if settings.internal_api_key is None:
        print("  INTERNAL_API_KEY_SECRET is not set: status updates from workers are refused")
    if settings.auth and settings.identity == "builtin":
        print("  get a token:")
        print(f"    curl -X POST {base}/user -d username=me@example.org -d password='s3cret-pass'")
        print(f"    curl -X POST {base}/token -d username=me@example.org -d password='s3cret-pass'")
    # SIGTERM: stop accepting, finish the requests and the dispatch under way (up to 30 s), then exit.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        proxy_headers=True,
        timeout_graceful_shutdown=30,
    )
    return 0


def _check_config(args: argparse.Namespace) -> int:
    import yaml

    from decode_userapi.domain.applications import Catalog, CatalogError

    path = Path(args.file or Settings.from_env().application_config_file)
    try:
        catalog = Catalog.from_document(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, CatalogError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    count = sum(len(eps) for versions in catalog.applications.values() for eps in versions.values())
    print(f"{path}: ok, {len(catalog.applications)} applications, {count} entrypoints")
    return 0


async def _schema_revision(database_url: str, *, upgrade: bool) -> str | None:
    from decode_userapi.adapters.sql import Database

    database = Database(database_url, pool_size=1, max_overflow=0, migrate_on_start=False)
    try:
        if upgrade:
            await database.migrate()
        return await database.schema_revision()
    finally:
        await database.aclose()


def _db(args: argparse.Namespace) -> int:
    from decode_userapi.adapters.sql import SchemaNotCurrent, head_revision
    from decode_userapi.domain.errors import StoreUnavailable
    from decode_userapi.logging import configure_logging

    configure_logging()
    from decode_userapi.container import database_url

    url = database_url(Settings.from_env())
    try:
        revision = asyncio.run(_schema_revision(url, upgrade=args.db_command == "upgrade"))
    except (StoreUnavailable, SchemaNotCurrent) as e:
        print(f"decode-userapi: {_describe_database(url)}: {e}", file=sys.stderr)
        return 1
    head = head_revision()
    if revision == head:
        state = "head"
    elif revision is None:
        state = "no schema yet: run `decode-userapi db upgrade`"
    else:
        state = f"head is {head}: run `decode-userapi db upgrade`"
    print(f"{revision or 'none'} ({state})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="decode-userapi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)
    check = commands.add_parser("check-config", help="validate an application config file")
    check.add_argument("file", nargs="?")
    check.set_defaults(run=_check_config)
    db = commands.add_parser("db", help="the database schema (DATABASE_URL)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="migrate the schema to the newest revision").set_defaults(run=_db)
    db_commands.add_parser("current", help="print the schema's revision").set_defaults(run=_db)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (SettingsError, SecretError) as e:
        print(f"decode-userapi: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
