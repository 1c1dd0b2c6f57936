"""`decode-userapi`: serve the API and operate it (database schema, accounts, application config, settings)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

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


def _worker_sim(args: argparse.Namespace) -> int:
    import uvicorn

    from decode_userapi.entrypoints.worker_sim import SimulatorConfig, create_simulator_app
    from decode_userapi.logging import configure_logging

    configure_logging()
    settings = Settings.from_env()
    if settings.filesystem != "local":
        print("decode-userapi: worker-sim serves local storage only (FILESYSTEM=local)", file=sys.stderr)
        return 2
    if not settings.internal_api_key:
        print(
            "decode-userapi: worker-sim needs INTERNAL_API_KEY_SECRET, the same as `serve` reads "
            "(e.g. one line in a .env file in the directory both start from)",
            file=sys.stderr,
        )
        return 2
    config = SimulatorConfig(
        api_key=settings.internal_api_key,
        userapi_url=args.userapi_url,
        data_root=settings.user_data_root_path,
        step_seconds=args.step_seconds,
    )
    print(f"worker simulator on http://{args.host}:{args.port}, reporting to {config.userapi_url}")
    print(f"  writes job results under {Path(config.data_root).resolve()}, one status every {args.step_seconds} s")
    uvicorn.run(create_simulator_app(config), host=args.host, port=args.port, log_level=args.log_level)
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
    """Every setting the service reads, by its environment variable, as the service would use it."""
    import msgspec

    from decode_userapi.config import AWS_ENV, AWS_SECRET_ENV, LOGGING_ENV

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
    identity = shown.pop("identity")
    rows = [(ENV_NAMES[name], "" if value is None else str(value)) for name, value in shown.items()]
    rows += [(name, os.environ.get(name) or default) for name, default in LOGGING_ENV.items()]
    for name in AWS_ENV:
        value = os.environ.get(name, "")
        rows.append((name, "***" if value and name in AWS_SECRET_ENV else value))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"# identity provider: {identity} (cognito when COGNITO_USER_POOL_ID is set)")
    print("# AWS_* are read by the AWS SDK from the process environment; empty: the SDK's default")
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
        users = api.users
        try:
            if args.user_command == "create":
                import getpass

                password = args.password or getpass.getpass(f"password for {args.username}: ")
                principal = await users.register(args.username, password, args.groups)
                print(f"created {principal.user_id} groups={','.join(principal.groups)}")
            elif args.user_command == "list":
                for account in await users.list():
                    print(f"{account.user_id}  email={account.email or '-'}  groups={','.join(account.groups)}")
            else:
                account = await users.add_groups(args.username, args.groups)
                print(f"{account.user_id} groups={','.join(account.groups)} (new tokens carry them)")
        except DomainError as e:
            print(f"decode-userapi: {e.detail}", file=sys.stderr)
            return 1
    return 0


def _jobs(args: argparse.Namespace) -> int:
    return asyncio.run(_jobs_command(args))


async def _jobs_command(args: argparse.Namespace) -> int:
    """Operator commands on one job, on its owner's behalf, through the embedding API (no HTTP)."""
    import msgspec

    from decode_userapi.domain.errors import DomainError
    from decode_userapi.entrypoints.embedded import UserApi
    from decode_userapi.logging import configure_logging

    configure_logging("WARNING")
    async with UserApi.open(Settings.from_env(), dispatch=False) as api:
        try:
            owner = await api.jobs.owner(args.job_id)
            if args.jobs_command == "cancel":
                job = await api.jobs.cancel(owner, args.job_id)
                print(f"canceled job {job.id} ({job.job_name}) of {job.user_id}; dispatch {job.dispatch.status.value}")
                return 0
            events = await api.jobs.events(owner, args.job_id, after=args.after, limit=args.limit)
        except DomainError as e:
            print(f"decode-userapi: {e.detail}", file=sys.stderr)
            return 1
    for event in events:
        if args.json:
            print(msgspec.json.encode(event).decode())
            continue
        details = (event.details or "").replace("\n", " | ")
        details = details if len(details) <= 100 else details[:99] + "…"
        status = event.status.value if event.status else "-"
        ignored = "  (ignored)" if event.ignored else ""
        print(f"{event.id:>8}  {event.at.isoformat(timespec='milliseconds')}  {event.kind:<8} {status:<14}{ignored}  {details}".rstrip())
    return 0


async def _schema_revision(database: Any, *, upgrade: bool) -> str | None:
    try:
        if upgrade:
            await database.migrate()
        revision: str | None = await database.schema_revision()
        return revision
    finally:
        await database.aclose()


def _db(args: argparse.Namespace) -> int:
    from decode_userapi.container import SchemaNotCurrent, build_adapters, head_revision
    from decode_userapi.domain.errors import StoreUnavailable
    from decode_userapi.logging import configure_logging

    configure_logging()
    database = build_adapters(Settings.from_env()).database()  # the service's own, not started
    where = _describe_database(database.url.render_as_string(hide_password=True))
    try:
        revision = asyncio.run(_schema_revision(database, upgrade=args.db_command == "upgrade"))
    except (StoreUnavailable, SchemaNotCurrent) as e:
        print(f"decode-userapi: {where}: {e}", file=sys.stderr)
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


def _s3(args: argparse.Namespace) -> int:
    return asyncio.run(_s3_cleanup(args))


async def _s3_cleanup(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from decode_userapi.container import build_services
    from decode_userapi.domain.errors import DomainError
    from decode_userapi.logging import configure_logging

    configure_logging("WARNING")
    settings = Settings.from_env()
    if settings.filesystem != "s3":
        print("decode-userapi: s3 cleanup needs FILESYSTEM=s3 (local storage cleans up on its own)", file=sys.stderr)
        return 2
    if args.older_than_hours < 0:
        print("decode-userapi: --older-than-hours must be 0 or more", file=sys.stderr)
        return 2
    before = datetime.now(UTC) - timedelta(hours=args.older_than_hours)
    storage = build_services(settings).adapters.file_storage()
    where = f"s3://{settings.s3_bucket}/{settings.user_data_root_path.strip('/')}/"
    try:
        await storage.start()
        try:
            aborted = await storage.remove_leftovers(before)
        finally:
            await storage.aclose()
    except DomainError as e:
        print(f"decode-userapi: {e.detail}", file=sys.stderr)
        return 1
    print(f"aborted {aborted} multipart uploads under {where} begun before {before.isoformat(timespec='seconds')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="decode-userapi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API (settings from the environment and .env)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="processes (each with its own dispatcher)")
    serve.add_argument("--reload", action="store_true", help="restart when the code changes (development)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)

    sim = commands.add_parser(
        "worker-sim",
        help="a stand-in worker-facing API that runs every job to `finished` (local storage; development)",
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8001, help="WORKERFACING_API_URL's port (default 8001)")
    sim.add_argument(
        "--userapi-url",
        default=os.environ.get("USERAPI_URL", "http://127.0.0.1:8000"),
        help="where `serve` listens, for status updates (default $USERAPI_URL or http://127.0.0.1:8000)",
    )
    sim.add_argument("--step-seconds", type=float, default=1.0, help="delay between two statuses (default 1)")
    sim.add_argument("--log-level", default="info")
    sim.set_defaults(run=_worker_sim)

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

    jobs = commands.add_parser("jobs", help="one job, on its owner's behalf (operators)")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    job_events = jobs_commands.add_parser("events", help="the job's history, oldest first (ignored updates marked)")
    job_events.add_argument("job_id", type=int)
    job_events.add_argument("--after", type=int, default=0, help="only events with an id above this one")
    job_events.add_argument("--limit", type=int, default=1000, help="at most this many, 1 to 1000 (default 1000)")
    job_events.add_argument("--json", action="store_true", help="one JSON object per line")
    job_events.set_defaults(run=_jobs)
    job_cancel = jobs_commands.add_parser("cancel", help="cancel the job (it ends as `canceled`; its owner is emailed)")
    job_cancel.add_argument("job_id", type=int)
    job_cancel.set_defaults(run=_jobs)

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

    s3 = commands.add_parser("s3", help="the S3 bucket of the users' files (FILESYSTEM=s3)")
    s3_commands = s3.add_subparsers(dest="s3_command", required=True)
    cleanup = s3_commands.add_parser(
        "cleanup", help="abort multipart uploads left by interrupted uploads (the service does it hourly)"
    )
    cleanup.add_argument(
        "--older-than-hours", type=float, default=24.0, help="begun at least this long ago (default 24)"
    )
    cleanup.set_defaults(run=_s3)

    config = commands.add_parser("config", help="the effective settings")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_commands.add_parser("show", help="print them, secrets masked").set_defaults(run=_config_show)

    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except SettingsError as e:
        print(f"decode-userapi: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if "decode_userapi.container" in sys.modules:  # secrets are resolved only by the container
            from decode_userapi.container import SecretError

            if isinstance(e, SecretError):
                print(f"decode-userapi: {e}", file=sys.stderr)
                return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
