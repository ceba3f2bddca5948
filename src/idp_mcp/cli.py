"""`idp-mcp serve`, `idp-mcp migrate`, `idp-mcp admin create`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from idp_mcp.errors import IdpError
from idp_mcp.logs import configure_logging
from idp_mcp.settings import Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from idp_mcp.app import create_app

    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    print(f"idp-mcp {settings.public_url}  ·  MCP server URL: {settings.mcp_resource}", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep our handlers (and their secret filter) for uvicorn too
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        access_log=False,
    )
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from idp_mcp.core.identity import IdentityCore

    core = IdentityCore.from_settings(Settings())
    core.bootstrap()
    core.close()
    print("database is up to date")
    return 0


def _admin_create(args: argparse.Namespace) -> int:
    from idp_mcp.core.identity import IdentityCore

    core = IdentityCore.from_settings(Settings())
    try:
        core.bootstrap()
        user = asyncio.run(core.users.create_administrator(args.email, args.password))
    except IdpError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        core.close()
    print(f"administrator {user.email} created")
    return 0


def _tenant_create(args: argparse.Namespace) -> int:
    from idp_mcp.core.identity import IdentityCore
    from idp_mcp.domain import ADMIN_TENANT_ID, Actor

    core = IdentityCore.from_settings(Settings())
    try:
        core.bootstrap()
        owner = core.users.find_administrator(args.admin)
        if owner is None:
            print(f"error: no administrator with the email {args.admin}; create one first", file=sys.stderr)
            return 1
        tenant = core.tenants.create(
            args.id, args.name, owner_user_id=owner.id, actor=Actor(tenant_id=ADMIN_TENANT_ID, sub=owner.id)
        )
    except IdpError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        core.close()
    print(f"tenant {tenant.id} ({tenant.name}) created, administered by {args.admin}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idp-mcp", description="An identity provider that AI agents administer through MCP."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (migrations run first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1", help="proxies trusted for X-Forwarded-*")
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date and exit")
    migrate.set_defaults(func=_migrate)

    admin = commands.add_parser("admin", help="manage administrators")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    create = admin_commands.add_parser("create", help="create an administrator without prompting")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.set_defaults(func=_admin_create)

    tenant = commands.add_parser("tenant", help="manage tenants")
    tenant_commands = tenant.add_subparsers(dest="tenant_command", required=True)
    tenant_create = tenant_commands.add_parser("create", help="create a tenant owned by an administrator")
    tenant_create.add_argument("--id", required=True, help="lowercase letters, digits and hyphens")
    tenant_create.add_argument("--name", required=True)
    tenant_create.add_argument("--admin", required=True, help="email of the administrator who owns it")
    tenant_create.set_defaults(func=_tenant_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
