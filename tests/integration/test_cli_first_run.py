"""The first run, as a new user meets it through the command line (each command a subprocess with the environment a
user would have): the advertised URLs follow ``serve --port`` unless IDP_MCP_PUBLIC_URL is set, a set URL that
disagrees with a loopback bind is warned about, workers advertise the same URL, start-up prints one block, the
database lives in one place whatever the current directory, every command names it, and an empty one says so."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support.databases import DB_KIND
from tests.support.first_run import SETUP_CODE, cli, serve_command, serving, user_environment
from tests.support.live_server import free_port

ADA = ("--email", "ada@example.com", "--password", "a long passphrase")


def metadata(port: int) -> tuple[str, str]:
    """(issuer, MCP resource) as the server at ``port`` advertises them."""
    base = f"http://127.0.0.1:{port}"
    issuer = httpx.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()["issuer"]
    resource = httpx.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=10).json()["resource"]
    return issuer, resource


def test_serve_without_a_public_url_advertises_the_port_it_listens_on_and_prints_one_block(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = user_environment(home)
    port = free_port()
    database = home / ".local" / "share" / "idp-mcp" / "idp-mcp.db"
    with serving(serve_command(port), env, port, tmp_path / "first.log", cwd=tmp_path) as served:
        url = f"http://127.0.0.1:{port}"
        assert metadata(port) == (url, f"{url}/mcp")
        # Every endpoint a client is sent to names the served origin too.
        discovery = httpx.get(f"{url}/.well-known/openid-configuration", timeout=10).json()
        for name in ("authorization_endpoint", "token_endpoint", "registration_endpoint", "jwks_uri"):
            assert discovery[name].startswith(f"{url}/"), (name, discovery[name])
    out = served.output()
    assert f"idp-mcp is starting on 127.0.0.1:{port}" in out
    assert f"Open in a browser:  {url}/" in out
    assert f"MCP server URL:     {url}/mcp" in out
    assert f"Database:           {database} (SQLite)" in out
    assert "Administrator:      none yet" in out
    assert SETUP_CODE.search(out), out
    assert "idp-mcp admin create --email" in out
    assert "8000" not in out
    assert "alembic" not in out.lower(), "Alembic narrates migrations at INFO"
    before_uvicorn = out.split("uvicorn", 1)[0]
    assert "MCP server URL" in before_uvicorn and "Database:" in before_uvicorn  # one block, before the server's log

    # From another directory, the administrator lands in the same database; the next start says one exists.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    created = cli(env, "admin", "create", *ADA, cwd=elsewhere)
    assert created.returncode == 0, created.stderr
    with serving(serve_command(port), env, port, tmp_path / "second.log", cwd=tmp_path) as served:
        pass
    out = served.output()
    assert f"Administrator:      yes (sign in at {url}/)" in out
    assert not SETUP_CODE.search(out)


def test_alembic_narrates_migrations_at_debug(tmp_path: Path, database_url: str) -> None:
    env = user_environment(tmp_path / "home", IDP_MCP_DATABASE_URL=database_url, IDP_MCP_LOG_LEVEL="DEBUG")
    port = free_port()
    with serving(serve_command(port), env, port, tmp_path / "serve.log") as served:
        pass
    assert "alembic.runtime.migration" in served.output()


def test_a_public_url_on_another_port_than_the_loopback_bind_is_warned_about(tmp_path: Path, database_url: str) -> None:
    env = user_environment(
        tmp_path / "home", IDP_MCP_DATABASE_URL=database_url, IDP_MCP_PUBLIC_URL="http://127.0.0.1:8000"
    )
    port = free_port()
    with serving(serve_command(port), env, port, tmp_path / "serve.log") as served:
        assert metadata(port)[0] == "http://127.0.0.1:8000"  # a set URL is obeyed
    out = served.output()
    assert f"warning: IDP_MCP_PUBLIC_URL is http://127.0.0.1:8000, but this server listens on 127.0.0.1:{port}" in out
    assert f"set it to http://127.0.0.1:{port}" in out


@pytest.mark.parametrize(
    ("public_url", "host", "port", "warned"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1", 8765, True),
        ("http://localhost:8000", "127.0.0.1", 8765, True),
        ("http://127.0.0.1:8000", "0.0.0.0", 8765, True),
        ("http://127.0.0.1", "127.0.0.1", 8765, True),
        ("http://127.0.0.1:8765", "127.0.0.1", 8765, False),
        ("http://localhost:8765", "127.0.0.1", 8765, False),
        ("https://id.example.com", "127.0.0.1", 8765, False),  # a proxy's public URL
        ("http://127.0.0.1:8000", "192.0.2.7", 8765, False),  # not a loopback bind
    ],
)
def test_which_public_urls_disagree_with_the_bind(public_url: str, host: str, port: int, warned: bool) -> None:
    from idp_mcp.cli import _public_url_mismatch

    assert (_public_url_mismatch(public_url, host, port) is not None) is warned


def test_workers_advertise_the_url_derived_from_the_port(tmp_path: Path, database_url: str) -> None:
    env = user_environment(tmp_path / "home", IDP_MCP_DATABASE_URL=database_url, IDP_MCP_MCP_STATELESS="true")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(serve_command(port, "--workers", "2"), env, port, tmp_path / "serve.log") as served:
        # A connection of its own each time, so the requests spread over both workers.
        advertised = {metadata(port) for _ in range(8)}
    assert advertised == {(url, f"{url}/mcp")}, served.output()
    assert f"MCP server URL:     {url}/mcp" in served.output()


def test_the_default_database_is_the_same_from_any_directory_and_every_command_names_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = user_environment(home)
    database = home / ".local" / "share" / "idp-mcp" / "idp-mcp.db"
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()

    created = cli(env, "admin", "create", *ADA, cwd=first)
    assert created.returncode == 0, created.stderr
    assert f"database: {database} (SQLite)" in created.stderr
    tenant = cli(env, "tenant", "create", "--id", "acme", "--name", "Acme", "--admin", "ada@example.com", cwd=second)
    assert tenant.returncode == 0, tenant.stderr
    assert f"database: {database} (SQLite)" in tenant.stderr
    for args in (
        ("migrate",),
        ("keys", "list"),
        ("tenant", "add-member", "--tenant", "acme", "--admin", "x@y.z", "--role", "admin"),
    ):
        ran = cli(env, *args, cwd=second)
        assert f"database: {database} (SQLite)" in ran.stderr, args
    assert not (first / ".idp-mcp").exists() and not (second / ".idp-mcp").exists()

    xdg = tmp_path / "xdg"
    ran = cli({**env, "XDG_DATA_HOME": str(xdg)}, "migrate")
    assert f"database: {xdg / 'idp-mcp' / 'idp-mcp.db'} (SQLite)" in ran.stderr
    ran = cli({**env, "XDG_DATA_HOME": str(xdg), "IDP_MCP_DATA_DIR": str(tmp_path / "mine")}, "migrate")
    assert f"database: {tmp_path / 'mine' / 'idp-mcp.db'} (SQLite)" in ran.stderr


def test_a_command_that_needs_an_administrator_says_plainly_when_the_database_has_none(
    tmp_path: Path, database_url: str
) -> None:
    env = user_environment(tmp_path / "home", IDP_MCP_DATABASE_URL=database_url)
    for args in (
        ("tenant", "create", "--id", "acme", "--name", "Acme", "--admin", "ada@example.com"),
        ("tenant", "add-member", "--tenant", "default", "--admin", "ada@example.com", "--role", "admin"),
    ):
        refused = cli(env, *args)
        assert refused.returncode == 1
        assert re.search(
            r"this database \(.+\) has no administrator yet; create one with: idp-mcp admin create "
            r"--email ada@example\.com",
            refused.stderr,
        ), refused.stderr
        if DB_KIND == "sqlite":  # the file's path, as a person finds it again
            assert f"this database ({database_url.removeprefix('sqlite:///')}) has" in refused.stderr

    assert cli(env, "admin", "create", *ADA).returncode == 0
    refused = cli(env, "tenant", "create", "--id", "acme", "--name", "Acme", "--admin", "bob@example.com")
    assert refused.returncode == 1
    assert "no administrator with the email bob@example.com in this database" in refused.stderr


def test_a_database_url_is_shown_without_its_password(tmp_path: Path, database_url: str) -> None:
    password = "pw-not-to-show-42"
    unreachable = f"postgresql://idp:{password}@127.0.0.1:{free_port()}/idp"
    ran = cli(user_environment(tmp_path / "home", IDP_MCP_DATABASE_URL=unreachable), "migrate")
    assert ran.returncode == 1
    assert "database: postgresql+psycopg://idp:***@127.0.0.1:" in ran.stderr
    assert "error: cannot use the database postgresql+psycopg://idp:***@" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert password not in ran.stderr + ran.stdout

    if DB_KIND == "postgresql":  # trust authentication ignores the password: the command works and hides it
        with_password = database_url.replace("://postgres@", f"://postgres:{password}@", 1)
        ran = cli(user_environment(tmp_path / "home", IDP_MCP_DATABASE_URL=with_password), "migrate")
        assert ran.returncode == 0, ran.stderr
        assert "postgres:***@" in ran.stderr and password not in ran.stderr + ran.stdout


def test_a_database_in_the_old_relative_default_is_pointed_out_not_silently_ignored(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = user_environment(tmp_path / "home")
    old = cli({**env, "IDP_MCP_DATA_DIR": ".idp-mcp"}, "admin", "create", *ADA, cwd=project)
    assert old.returncode == 0, old.stderr

    ran = cli(env, "tenant", "create", "--id", "acme", "--name", "Acme", "--admin", "ada@example.com", cwd=project)
    assert ran.returncode == 1
    legacy = project / ".idp-mcp"
    assert f"note: {legacy / 'idp-mcp.db'} (the default before" in ran.stderr
    assert f"set IDP_MCP_DATA_DIR={legacy}" in ran.stderr

    kept = cli(
        {**env, "IDP_MCP_DATA_DIR": str(legacy)},
        "tenant",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--admin",
        "ada@example.com",
        cwd=tmp_path,
    )
    assert kept.returncode == 0, kept.stderr
    assert "note:" not in kept.stderr
