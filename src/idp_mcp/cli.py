"""`idp-mcp serve`, `idp-mcp migrate`, `idp-mcp admin create`, `idp-mcp tenant create|add-member`,
`idp-mcp keys ...`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from idp_mcp.errors import IdpError
from idp_mcp.logs import configure_logging
from idp_mcp.settings import (
    DATABASE_FILE,
    LEGACY_DATA_DIR,
    WILDCARD_HOSTS,
    Settings,
    default_data_dir,
    is_loopback_host,
    public_url_for_bind,
)

if TYPE_CHECKING:
    from idp_mcp.core.identity import IdentityCore
    from idp_mcp.domain import Actor, Tenant


ROLE_CHOICES = ("owner", "admin", "read-only")  # core.tenants.ROLES (the core is imported lazily: start-up time)

WORKERS_NEED_STATELESS = (
    "error: --workers {workers} needs IDP_MCP_MCP_STATELESS=true. Worker processes share one port and each "
    "keeps its own MCP sessions, so a session opened on one worker is unknown to the next one a request lands "
    "on. Set IDP_MCP_MCP_STATELESS=true, or run one worker per replica behind a load balancer with sticky routing."
)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from idp_mcp.app import create_app

    settings = Settings()
    notes: list[str] = []
    if "public_url" not in settings.model_fields_set:
        # Nothing says where clients reach us: the bind does, so the issuer, the MCP resource and every link name
        # the port actually served (a default of :8000 with --port 8765 sent every client to a closed port).
        public_url, wildcard = public_url_for_bind(args.host, args.port)
        settings = Settings(public_url=public_url)
        if wildcard:
            notes.append(
                f"note: listening on every interface ({args.host or '*'}); the URLs above use 127.0.0.1, which "
                "only this machine reaches. Set IDP_MCP_PUBLIC_URL to the URL other machines use."
            )
    else:
        mismatch = _public_url_mismatch(settings.public_url, args.host, args.port)
        if mismatch:
            notes.append(mismatch)
    legacy = _legacy_database_note(settings)
    if legacy:
        notes.append(legacy)
    configure_logging(settings.log_level)
    options: dict[str, object] = {
        "host": args.host,
        "port": args.port,
        "log_level": settings.log_level.lower(),
        "log_config": None,  # keep our handlers (and their secret filter) for uvicorn too
        "proxy_headers": True,
        "forwarded_allow_ips": args.forwarded_allow_ips,
        "access_log": False,
    }
    if args.workers > 1 and not settings.mcp_stateless:
        print(WORKERS_NEED_STATELESS.format(workers=args.workers), file=sys.stderr)
        return 2
    # Migrations run here, before any worker starts (each one then finds nothing to do), and a broken configuration
    # stops this command instead of sending workers into a restart loop. The setup code is announced here, once.
    app = create_app(settings, announce_setup_code=False)
    core: IdentityCore = app.state.core
    print(_start_banner(settings, core, args.host, args.port, notes), flush=True)
    if args.workers > 1:
        core.close()
        # uvicorn's worker processes build their settings from the environment (create_app_from_env): they must
        # advertise the URL derived here too.
        os.environ["IDP_MCP_PUBLIC_URL"] = settings.public_url
        uvicorn.run("idp_mcp.app:create_app_from_env", factory=True, workers=args.workers, **options)  # type: ignore[arg-type]
        return 0
    uvicorn.run(app, **options)  # type: ignore[arg-type]
    return 0


def _public_url_mismatch(public_url: str, host: str, port: int) -> str | None:
    """A warning when IDP_MCP_PUBLIC_URL names this machine on another port than the one served: clients would
    follow the advertised URLs to a closed port. (A public URL on another host is a proxy's: no warning.)"""
    parts = urlsplit(public_url)
    if not is_loopback_host(parts.hostname or "") or not (is_loopback_host(host) or host.strip() in WILDCARD_HOSTS):
        return None
    advertised = parts.port or (443 if parts.scheme == "https" else 80)
    if advertised == port:
        return None
    served, _ = public_url_for_bind(host, port)
    return (
        f"warning: IDP_MCP_PUBLIC_URL is {public_url}, but this server listens on {host}:{port}. Clients follow the "
        f"advertised URLs to port {advertised} and will not reach it (unless a proxy there forwards to {port}). "
        f"Unset IDP_MCP_PUBLIC_URL to derive it from --host/--port, or set it to {served}."
    )


def _start_banner(settings: Settings, core: IdentityCore, host: str, port: int, notes: list[str]) -> str:
    """The one block a person reads at start: what to open, what to paste, whether an administrator exists (and
    how to make the first one), and which database this is."""
    from idp_mcp.core.setup_codes import is_loopback_url

    code = core.setup_codes.issue()  # a fresh code while no administrator exists, else None
    lines = [
        f"idp-mcp is starting on {host}:{port}",
        f"  Open in a browser:  {settings.url('/')}",
        f"  MCP server URL:     {settings.mcp_resource}   (paste it into your agent's MCP settings)",
        f"  Database:           {database_text(settings)}",
    ]
    if code is None:
        lines.append(f"  Administrator:      yes (sign in at {settings.url('/')})")
    else:
        # Shown on purpose, once, like Jupyter's token: whoever reads this console may create the first administrator.
        local = " (not asked in a browser on this machine)" if is_loopback_url(settings.public_url) else ""
        lines += [
            "  Administrator:      none yet. Create the first one:",
            f"    - in a browser at {settings.url('/setup')} with the one-time setup code {code}{local}",
            "    - or run: idp-mcp admin create --email you@example.com --password '<a long passphrase>'",
        ]
    lines += [f"  {note}" for note in notes]
    return "\n".join(lines)


def database_text(settings: Settings) -> str:
    """The database in use, as a person can find it again: the SQLite file's path, or the URL without its password."""
    location = database_location(settings)
    return f"{location} (SQLite)" if location.startswith("/") else location


def database_location(settings: Settings) -> str:
    """The SQLite file's absolute path, or the database URL with its password masked."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database.startswith("/"):
        return url.database
    return url.render_as_string(hide_password=True)


def _announce_database(settings: Settings) -> None:
    """Every command says which database it works on (to stderr: stdout stays the command's result)."""
    print(f"database: {database_text(settings)}", file=sys.stderr)
    note = _legacy_database_note(settings)
    if note:
        print(note, file=sys.stderr)


def _legacy_database_note(settings: Settings) -> str | None:
    """A database in the old default place (./.idp-mcp, relative to the current directory) that is not the one in
    use: said plainly, since its data is not lost but is not what this command sees."""
    legacy = (LEGACY_DATA_DIR / DATABASE_FILE).resolve()
    if settings.database_url is not None or legacy == (settings.data_dir / DATABASE_FILE).resolve():
        return None
    if not legacy.is_file():
        return None
    return (
        f"note: {legacy} (the default before the data directory moved to {default_data_dir()}) is not in use. "
        f"To keep using it, set IDP_MCP_DATA_DIR={legacy.parent}, or move its files into {settings.data_dir} "
        "while no server runs."
    )


def _migrate(_: argparse.Namespace) -> int:
    def migrated(core: IdentityCore) -> int:
        print("database is up to date")
        return 0

    return _with_core(migrated)


def _membership_text(memberships: list[tuple[Tenant, str]]) -> str:
    if not memberships:
        return "a member of no tenant yet"
    return ", ".join(f"{role} of tenant {tenant.id}" for tenant, role in memberships)


def _admin_create(args: argparse.Namespace) -> int:
    def create(core: IdentityCore) -> int:
        user = asyncio.run(
            core.users.create_administrator(args.email, args.password, tenant_id=args.tenant, role=args.role)
        )
        memberships = core.tenants.memberships(user.id)
        print(f"administrator {user.email} created: {_membership_text(memberships)}")
        if not memberships:
            print(f"add them to a tenant: idp-mcp tenant add-member --tenant <id> --admin {user.email} --role admin")
        return 0

    return _with_core(create)


def _tenant_create(args: argparse.Namespace) -> int:
    from idp_mcp.domain import ADMIN_TENANT_ID, Actor

    def create(core: IdentityCore) -> int:
        owner = core.users.find_administrator(args.admin)
        if owner is None:
            print(_no_such_administrator(core, args.admin), file=sys.stderr)
            return 1
        tenant = core.tenants.create(
            args.id, args.name, owner_user_id=owner.id, actor=Actor(tenant_id=ADMIN_TENANT_ID, sub=owner.id)
        )
        print(f"tenant {tenant.id} ({tenant.name}) created, administered by {owner.email} (role owner)")
        return 0

    return _with_core(create)


def _tenant_add_member(args: argparse.Namespace) -> int:
    def add(core: IdentityCore) -> int:
        admin = core.users.find_administrator(args.admin)
        if admin is None:
            print(_no_such_administrator(core, args.admin), file=sys.stderr)
            return 1
        before = core.tenants.set_member(args.tenant, admin.id, args.role, _cli_actor(args.tenant))
        was = "" if before is None else f" (was {before})" if before != args.role else " (unchanged)"
        print(f"{admin.email} is {args.role} of tenant {args.tenant}{was}")
        return 0

    return _with_core(add)


def _no_such_administrator(core: IdentityCore, email: str) -> str:
    if not core.users.administrators_exist():
        # The usual cause: another database than the one meant (another data directory or database URL).
        return (
            f"error: this database ({database_location(core.settings)}) has no administrator yet; create one with: "
            f"idp-mcp admin create --email {email} --password '<a long passphrase>' (or, if the administrator is in "
            "another database, point at it with IDP_MCP_DATA_DIR or IDP_MCP_DATABASE_URL)"
        )
    return f"error: no administrator with the email {email} in this database; create one first"


def _with_core(action: Callable[[IdentityCore], int]) -> int:
    from sqlalchemy.exc import OperationalError

    from idp_mcp.core.identity import IdentityCore

    settings = Settings()
    _announce_database(settings)
    core = IdentityCore.from_settings(settings)
    try:
        core.bootstrap()
        return action(core)
    except IdpError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        # The driver's own words (no password in them), not a traceback.
        print(f"error: cannot use the database {database_text(settings)}: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        core.close()


def _cli_actor(tenant_id: str) -> Actor:
    from idp_mcp.domain import Actor

    return Actor(tenant_id=tenant_id, sub=None, client_name="idp-mcp command line")


def _keys_rotate(args: argparse.Namespace) -> int:
    def rotate(core: IdentityCore) -> int:
        key = core.keys.rotate(args.tenant, args.alg, actor=_cli_actor(args.tenant))
        seconds = core.settings.key_cache_seconds
        expired = key.created_at + timedelta(seconds=seconds + core.settings.access_token_ttl)
        print(f"key {key.kid} ({key.alg}) now signs for tenant {key.tenant_id}")
        print(f"running servers sign with it within {seconds:g} s; tokens signed by the previous keys stay valid")
        print(
            f"after {expired.isoformat(timespec='seconds')}, when those tokens have expired, retire the previous "
            f"keys: idp-mcp keys retire --tenant {args.tenant}"
        )
        return 0

    return _with_core(rotate)


def _keys_retire(args: argparse.Namespace) -> int:
    def retire(core: IdentityCore) -> int:
        actor = _cli_actor(args.tenant)
        if args.kid:
            retired = [core.keys.retire(args.tenant, args.kid, actor=actor, force=args.force)]
        else:
            retired = core.keys.retire_previous(args.tenant, actor=actor, force=args.force)
        for key in retired:
            print(f"key {key.kid} ({key.alg}) of tenant {key.tenant_id} retired: tokens it signed are refused")
        if not retired:
            print(f"tenant {args.tenant} has no published key besides the ones that sign")
        return 0

    return _with_core(retire)


def _keys_list(args: argparse.Namespace) -> int:
    def show(core: IdentityCore) -> int:
        print(f"{'tenant':<20} {'kid':<44} {'alg':<6} {'status':<10} created")
        for key in core.keys.list_keys(args.tenant):
            created = key.created_at.isoformat(timespec="seconds")
            print(f"{key.tenant_id:<20} {key.kid:<44} {key.alg:<6} {key.status:<10} {created}")
        return 0

    return _with_core(show)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idp-mcp", description="An identity provider that AI agents administer through MCP."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (migrations run first)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface); default 127.0.0.1"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on, default 8000; unless IDP_MCP_PUBLIC_URL is set, the advertised URLs use it too",
    )
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1", help="proxies trusted for X-Forwarded-*")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes (more than one needs IDP_MCP_MCP_STATELESS=true)"
    )
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date and exit")
    migrate.set_defaults(func=_migrate)

    admin = commands.add_parser("admin", help="manage administrators")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    create = admin_commands.add_parser("create", help="create an administrator without prompting")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.add_argument(
        "--tenant",
        help="the tenant they become a member of (default: the first administrator owns 'default'; later ones "
        "are members of nothing until added)",
    )
    create.add_argument("--role", choices=ROLE_CHOICES, help="their role in --tenant (default: admin)")
    create.set_defaults(func=_admin_create)

    tenant = commands.add_parser("tenant", help="manage tenants")
    tenant_commands = tenant.add_subparsers(dest="tenant_command", required=True)
    tenant_create = tenant_commands.add_parser("create", help="create a tenant owned by an administrator")
    tenant_create.add_argument("--id", required=True, help="lowercase letters, digits and hyphens")
    tenant_create.add_argument("--name", required=True)
    tenant_create.add_argument("--admin", required=True, help="email of the administrator who owns it")
    tenant_create.set_defaults(func=_tenant_create)
    add_member = tenant_commands.add_parser(
        "add-member", help="make an administrator a member of a tenant, or change their role there"
    )
    add_member.add_argument("--tenant", required=True, help="the tenant id")
    add_member.add_argument("--admin", required=True, help="email of the administrator")
    add_member.add_argument(
        "--role", required=True, choices=ROLE_CHOICES, help="owner and admin may change the tenant; read-only may look"
    )
    add_member.set_defaults(func=_tenant_add_member)

    keys = commands.add_parser("keys", help="rotate, retire and list signing keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_commands.add_parser("rotate", help="a new signing key; the previous ones stay published")
    rotate.add_argument("--tenant", default="admin", help="'admin' (the MCP issuer, default) or a tenant id")
    rotate.add_argument("--alg", default="ES256", choices=["ES256", "RS256"])
    rotate.set_defaults(func=_keys_rotate)
    retire = keys_commands.add_parser("retire", help="unpublish keys that no longer sign; their tokens are refused")
    retire.add_argument("--tenant", default="admin", help="'admin' (the MCP issuer, default) or a tenant id")
    retire.add_argument(
        "--kid",
        help="the key to retire, written --kid=<kid> (a kid may start with '-'); "
        "default: every published key that no longer signs",
    )
    retire.add_argument(
        "--force", action="store_true", help="retire even while tokens the key signed may still be valid"
    )
    retire.set_defaults(func=_keys_retire)
    listing = keys_commands.add_parser("list", help="every key with its status: signing, published or retired")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.set_defaults(func=_keys_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
