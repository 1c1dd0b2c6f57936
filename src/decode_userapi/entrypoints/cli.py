"""`decode-userapi`: serve the API and operate it (database schema, accounts, application config, settings)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from decode_userapi.adapters.secrets import SecretError
from decode_userapi.config import ENV_NAMES, Settings, SettingsError


def _describe_database(url: str) -> str:
    """The database, without credentials: a SQLite file's absolute path, or a server's host."""
    if url.startswith("sqlite"):
        return f"SQLite {Path(url.split(':///', 1)[-1]).resolve()}"
    return f"PostgreSQL {url.rsplit('@', 1)[-1]}"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from decode_userapi.logging import configure_logging

    configure_logging()
    settings = Settings.from_env()
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
    if args.workers > 1 or args.reload:
        # Several processes (or reloads) each build their own app from the environment.
        app: object = "decode_userapi.entrypoints.http.app:app_from_env"
    else:
        from decode_userapi.container import build_services
        from decode_userapi.entrypoints.http.app import create_app, settle_heap

        app = create_app(build_services(settings))
        settle_heap()
    # SIGTERM: stop accepting, finish the requests and the dispatch under way (up to 30 s), then exit.
    uvicorn.run(
        app,  # type: ignore[arg-type]
        factory=isinstance(app, str),
        host=args.host,
        port=args.port,
        workers=args.workers if args.workers > 1 else None,
        reload=args.reload,
        log_level=args.log_level,
        proxy_headers=True,
        timeout_graceful_shutdown=30,
    )
    return 0


def _apps(args: argparse.Namespace) -> int:
    import yaml

    from decode_userapi.domain.applications import Catalog, CatalogError

    path = Path(args.file or Settings.from_env().application_config_file)
    if str(path).startswith("s3:/"):
        print("decode-userapi: apps reads local files; download the s3:// object first", file=sys.stderr)
        return 2
    try:
        catalog = Catalog.from_document(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, CatalogError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    if args.apps_command == "list":
        for application, versions in sorted(catalog.applications.items()):
            for version, entrypoints in sorted(versions.items()):
                for name, entrypoint in sorted(entrypoints.items()):
                    print(f"{application} {version} {name}  image={entrypoint.handler.image_url}")
        return 0
    count = sum(len(eps) for versions in catalog.applications.values() for eps in versions.values())
    print(f"{path}: ok, {len(catalog.applications)} applications, {count} entrypoints")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    import msgspec

    settings = Settings.from_env()
    shown = msgspec.to_builtins(settings)
    for name in settings.secret_fields:
        if shown.get(name):
            shown[name] = "***"
    url = shown["database_url"]
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        scheme, rest = url.split("//", 1)
        credentials, host = rest.split("@", 1)
        shown["database_url"] = f"{scheme}//{credentials.split(':', 1)[0]}:***@{host}"
    names = {name: ENV_NAMES.get(name, name.upper()) for name in shown}
    width = max(len(name) for name in names.values())
    for name, value in shown.items():
        print(f"{names[name]:<{width}}  {value}")
    return 0


def _user(args: argparse.Namespace) -> int:
    return asyncio.run(_user_command(args))


async def _user_command(args: argparse.Namespace) -> int:
    from decode_userapi.domain.errors import DomainError
    from decode_userapi.entrypoints.embedded import UserApi
    from decode_userapi.logging import configure_logging

    configure_logging("WARNING")
    settings = Settings.from_env()
    if settings.identity != "builtin":
        print("decode-userapi: user commands manage the built-in identity's accounts (Cognito is set)", file=sys.stderr)
        return 2
    async with UserApi.open(settings, dispatch=False) as api:
        users = api.services.adapters.user_store()
        try:
            if args.user_command == "create":
                import getpass

                password = args.password or getpass.getpass(f"password for {args.username}: ")
                principal = await api.register(args.username, password, args.groups or ["users"])
                print(f"created {principal.user_id} groups={','.join(principal.groups)}")
            elif args.user_command == "list":
                for record in await users.list():
                    print(f"{record.username}  email={record.email or '-'}  groups={','.join(record.groups)}")
            else:
                record = await users.get(args.username)
                if record is None:
                    print(f"decode-userapi: no user {args.username!r}", file=sys.stderr)
                    return 1
                groups = tuple(dict.fromkeys((*record.groups, *args.groups)))
                record = await users.set_groups(args.username, groups)
                print(f"{record.username} groups={','.join(record.groups)} (new tokens carry them)")
        except DomainError as e:
            print(f"decode-userapi: {e.detail}", file=sys.stderr)
            return 1
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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API (settings from the environment and .env)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="processes (each with its own dispatcher)")
    serve.add_argument("--reload", action="store_true", help="restart when the code changes (development)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)

    db = commands.add_parser("db", help="the database schema (DATABASE_URL)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="migrate the schema to the newest revision").set_defaults(run=_db)
    db_commands.add_parser("current", help="print the schema's revision").set_defaults(run=_db)

    user = commands.add_parser("user", help="accounts of the built-in identity provider")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    create = user_commands.add_parser("create", help="create an account (asks for the password)")
    create.add_argument("username")
    create.add_argument("--password", help="instead of asking (it stays in your shell history)")
    create.add_argument("--group", dest="groups", action="append", help="repeatable; default: users")
    create.set_defaults(run=_user)
    user_commands.add_parser("list", help="list accounts and their groups").set_defaults(run=_user)
    add_group = user_commands.add_parser("add-group", help="add groups to an account")
    add_group.add_argument("username")
    add_group.add_argument("groups", nargs="+")
    add_group.set_defaults(run=_user)

    apps = commands.add_parser("apps", help="the application config (APPLICATION_CONFIG_FILE)")
    apps_commands = apps.add_subparsers(dest="apps_command", required=True)
    check = apps_commands.add_parser("check", help="validate a config; names the bad key")
    check.add_argument("file", nargs="?")
    check.set_defaults(run=_apps)
    listing = apps_commands.add_parser("list", help="list application, version, entrypoint")
    listing.add_argument("file", nargs="?")
    listing.set_defaults(run=_apps)
    legacy = commands.add_parser("check-config", help="same as `apps check`")
    legacy.add_argument("file", nargs="?")
    legacy.set_defaults(run=_apps, apps_command="check")

    config = commands.add_parser("config", help="the effective settings")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_commands.add_parser("show", help="print them, secrets masked").set_defaults(run=_config_show)

    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (SettingsError, SecretError) as e:
        print(f"decode-userapi: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
