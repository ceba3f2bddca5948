"""Settings: PUBLIC_URL normalisation, database URL rewriting, and the URLs derived from them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from idp_mcp.settings import Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the IDP_MCP_* variables they set themselves."""
    for name in list(os.environ):
        if name.upper().startswith("IDP_MCP_"):
            monkeypatch.delenv(name)


# --- PUBLIC_URL ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("https://id.example.com", "https://id.example.com", id="canonical"),
        pytest.param("https://id.example.com/", "https://id.example.com", id="trailing-slash"),
        pytest.param("https://id.example.com//", "https://id.example.com", id="double-trailing-slash"),
        pytest.param("https://ID.Example.COM", "https://id.example.com", id="host-upper-case"),
        pytest.param("HTTPS://ID.Example.com/", "https://id.example.com", id="scheme-and-host-upper-case"),
        pytest.param("  https://id.example.com/  ", "https://id.example.com", id="surrounding-whitespace"),
        pytest.param("http://127.0.0.1:8000/", "http://127.0.0.1:8000", id="loopback-with-port"),
        pytest.param("https://id.example.com:8443", "https://id.example.com:8443", id="explicit-port-kept"),
    ],
)
def test_public_url_is_normalised_to_a_lower_case_origin_without_trailing_slash(given: str, expected: str) -> None:
    assert Settings(public_url=given).public_url == expected


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("https://id.example.com/idp", id="path"),
        pytest.param("https://id.example.com/idp/", id="path-with-trailing-slash"),
        pytest.param("https://id.example.com?x=1", id="query"),
        pytest.param("https://id.example.com/#top", id="fragment"),
    ],
)
def test_public_url_with_a_path_query_or_fragment_is_refused_with_a_clear_error(given: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        Settings(public_url=given)
    message = str(excinfo.value)
    assert "IDP_MCP_PUBLIC_URL must be an origin" in message
    assert "no path" in message


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("id.example.com", id="no-scheme"),
        pytest.param("ftp://id.example.com", id="ftp"),
        pytest.param("https://", id="no-host"),
    ],
)
def test_public_url_that_is_not_an_absolute_http_url_is_refused(given: str) -> None:
    with pytest.raises(ValidationError, match="IDP_MCP_PUBLIC_URL must be an absolute http"):
        Settings(public_url=given)


def test_public_url_is_read_from_the_environment_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDP_MCP_PUBLIC_URL", "https://Login.Example.org/")
    settings = Settings()
    assert settings.public_url == "https://login.example.org"
    assert settings.issuer == "https://login.example.org"


def test_public_url_with_a_path_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDP_MCP_PUBLIC_URL", "https://login.example.org/auth")
    with pytest.raises(ValidationError, match="IDP_MCP_PUBLIC_URL must be an origin"):
        Settings()


def test_default_public_url_is_the_loopback_development_origin() -> None:
    settings = Settings()
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.is_https is False


# --- derived URLs --------------------------------------------------------------------------------------------


def test_issuer_and_mcp_resource_are_derived_exactly_from_public_url() -> None:
    settings = Settings(public_url="https://ID.example.com/")
    assert settings.issuer == "https://id.example.com"
    assert settings.mcp_resource == "https://id.example.com/mcp"
    assert settings.public_host == "id.example.com"
    assert settings.is_https is True
    assert (
        settings.url("/.well-known/openid-configuration") == "https://id.example.com/.well-known/openid-configuration"
    )


def test_mcp_resource_keeps_the_port_of_public_url() -> None:
    settings = Settings(public_url="http://127.0.0.1:8000")
    assert settings.issuer == "http://127.0.0.1:8000"
    assert settings.mcp_resource == "http://127.0.0.1:8000/mcp"
    assert settings.public_host == "127.0.0.1:8000"


# --- database URL --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            "postgresql://idp:pw@db.internal:5432/idp",
            "postgresql+psycopg://idp:pw@db.internal:5432/idp",
            id="postgresql",
        ),
        pytest.param(
            "postgres://idp:pw@db.internal/idp?sslmode=require",
            "postgresql+psycopg://idp:pw@db.internal/idp?sslmode=require",
            id="postgres-heroku-style",
        ),
        pytest.param(
            "postgresql+psycopg://idp@db.internal/idp", "postgresql+psycopg://idp@db.internal/idp", id="already-psycopg"
        ),
        pytest.param("sqlite:////var/lib/idp/idp.db", "sqlite:////var/lib/idp/idp.db", id="sqlite-untouched"),
    ],
)
def test_postgres_database_urls_are_rewritten_to_the_psycopg_driver(given: str, expected: str) -> None:
    settings = Settings(database_url=given)
    assert settings.database_url == expected
    assert settings.resolved_database_url == expected


def test_database_url_from_the_environment_is_rewritten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDP_MCP_DATABASE_URL", "postgres://u:p@h/db")
    assert Settings().resolved_database_url == "postgresql+psycopg://u:p@h/db"


def test_default_database_is_an_sqlite_file_inside_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.database_url is None
    expected_file = (tmp_path / "data" / "idp-mcp.db").resolve()
    assert settings.resolved_database_url == f"sqlite:///{expected_file}"


def test_relative_data_dir_gives_an_absolute_sqlite_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IDP_MCP_DATA_DIR", "state")
    settings = Settings()
    assert settings.data_dir == Path("state")
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'state' / 'idp-mcp.db').resolve()}"


# --- the email connector ---------------------------------------------------------------------------------------


def test_the_email_connector_is_configured_by_host_and_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().email_connector_configured is False
    monkeypatch.setenv("IDP_MCP_SMTP_HOST", "smtp.example.com")
    assert Settings().email_connector_configured is False  # no sender yet
    monkeypatch.setenv("IDP_MCP_SMTP_FROM", "no-reply@example.com")
    monkeypatch.setenv("IDP_MCP_SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("IDP_MCP_SMTP_STARTTLS", "false")
    settings = Settings()
    assert settings.email_connector_configured is True
    assert (settings.smtp_port, settings.smtp_starttls) == (587, False)
    assert "s3cret" not in repr(settings)  # a SecretStr


# --- the database engine -----------------------------------------------------------------------------------------


def test_database_engine_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.sqlite_synchronous == "full"
    assert (settings.db_pool_size, settings.db_max_overflow, settings.db_pool_timeout) == (10, 20, 30.0)
    assert settings.debug_loop_guard is False


def test_database_engine_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDP_MCP_SQLITE_SYNCHRONOUS", "normal")
    monkeypatch.setenv("IDP_MCP_DB_POOL_SIZE", "5")
    monkeypatch.setenv("IDP_MCP_DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("IDP_MCP_DB_POOL_TIMEOUT", "2.5")
    monkeypatch.setenv("IDP_MCP_DEBUG_LOOP_GUARD", "1")
    settings = Settings()
    assert settings.sqlite_synchronous == "normal"
    assert (settings.db_pool_size, settings.db_max_overflow, settings.db_pool_timeout) == (5, 0, 2.5)
    assert settings.debug_loop_guard is True


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        pytest.param("IDP_MCP_SQLITE_SYNCHRONOUS", "off", "'full' or 'normal'", id="synchronous-off"),
        pytest.param("IDP_MCP_DB_POOL_SIZE", "0", "greater than or equal to 1", id="pool-size-zero"),
        pytest.param("IDP_MCP_DB_MAX_OVERFLOW", "-1", "greater than or equal to 0", id="negative-overflow"),
        pytest.param("IDP_MCP_DB_POOL_TIMEOUT", "0", "greater than 0", id="pool-timeout-zero"),
    ],
)
def test_bad_database_engine_settings_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as excinfo:
        Settings()
    message = str(excinfo.value)
    assert name.removeprefix("IDP_MCP_").lower() in message and says in message


# --- First run: the default data directory and the URL a bind implies ---------------------------------------


def test_the_default_data_directory_is_under_xdg_data_home_whatever_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == tmp_path / "xdg" / "idp-mcp"
    assert Settings().resolved_database_url == f"sqlite:///{tmp_path / 'xdg' / 'idp-mcp' / 'idp-mcp.db'}"


@pytest.mark.parametrize("xdg", ["", "relative/dir"], ids=["unset", "relative-ignored"])
def test_without_an_absolute_xdg_data_home_the_data_directory_is_under_the_home_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg: str
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Settings().data_dir == tmp_path / "home" / ".local" / "share" / "idp-mcp"


def test_an_explicit_data_directory_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("IDP_MCP_DATA_DIR", str(tmp_path / "mine"))
    assert Settings().data_dir == tmp_path / "mine"


@pytest.mark.parametrize(
    ("host", "port", "url", "wildcard"),
    [
        ("127.0.0.1", 8765, "http://127.0.0.1:8765", False),
        ("localhost", 9000, "http://localhost:9000", False),
        ("0.0.0.0", 8765, "http://127.0.0.1:8765", True),
        ("::", 8765, "http://127.0.0.1:8765", True),
        ("", 8765, "http://127.0.0.1:8765", True),
        ("::1", 8765, "http://[::1]:8765", False),
        ("192.0.2.7", 80, "http://192.0.2.7", False),
    ],
)
def test_the_public_url_a_bind_implies(host: str, port: int, url: str, wildcard: bool) -> None:
    from idp_mcp.settings import public_url_for_bind

    assert public_url_for_bind(host, port) == (url, wildcard)
    assert Settings(public_url=url).public_url == url  # a URL the settings take as it is
