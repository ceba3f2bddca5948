"""The identity core: one object that owns the database and every business service."""

from __future__ import annotations

import time
from collections.abc import Callable

from idp_mcp.core.administrator_sign_in import AdministratorSignIn
from idp_mcp.core.agents import ConnectedAgents
from idp_mcp.core.api_resources import ApiResources
from idp_mcp.core.applications import Applications
from idp_mcp.core.audit import AuditLog
from idp_mcp.core.clients import Clients, RegistrationLimits
from idp_mcp.core.connectors import Connectors
from idp_mcp.core.console import ConsoleAccess
from idp_mcp.core.grants import Grants
from idp_mcp.core.keys import KeyRing
from idp_mcp.core.mail import Mailer
from idp_mcp.core.mfa import Mfa
from idp_mcp.core.passkeys import Passkeys
from idp_mcp.core.permissions import Permissions
from idp_mcp.core.rate_limits import RateLimits, SignInLimits
from idp_mcp.core.recovery import PasswordRecovery
from idp_mcp.core.roles import Roles
from idp_mcp.core.secrets import ClientSecrets
from idp_mcp.core.sessions import Sessions
from idp_mcp.core.setup_codes import SetupCodes
from idp_mcp.core.sign_in import HostedSignIn
from idp_mcp.core.sign_in_experience import SignInExperiences
from idp_mcp.core.tenants import Tenants
from idp_mcp.core.users import TenantUsers, Users
from idp_mcp.core.verification_codes import VerificationCodes
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Clock, utcnow
from idp_mcp.settings import Settings
from idp_mcp.store.db import Database, engine_from_settings
from idp_mcp.store.loop_guard import blocking_allowed


class IdentityCore:
    def __init__(
        self, settings: Settings, db: Database, clock: Clock = utcnow, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.audit = AuditLog(db, clock, flush_interval=settings.audit_flush_interval)
        self.tenants = Tenants(db, clock, self.audit)
        self.rate_limits = RateLimits(db, clock)
        self.users = Users(
            db,
            clock,
            self.audit,
            self.rate_limits,
            SignInLimits(
                per_identifier=settings.sign_in_max_failures_per_identifier,
                per_address=settings.sign_in_max_failures_per_address,
                window_seconds=settings.sign_in_failure_window,
            ),
        )
        self.setup_codes = SetupCodes(db, clock, ADMIN_TENANT_ID)
        self.tenant_users = TenantUsers(db, clock, self.audit)
        self.secrets = ClientSecrets(db, clock, self.audit, settings.temporary_secret_ttl)
        self.applications = Applications(db, clock, self.audit, self.secrets)
        self.clients = Clients(
            db,
            clock,
            self.audit,
            self.rate_limits,
            RegistrationLimits(settings.registration_max_per_address, settings.registration_window),
        )
        self.grants = Grants(db, clock, self.audit)
        self.agents = ConnectedAgents(db, clock, self.audit)
        self.api_resources = ApiResources(db, clock, self.audit, settings.public_url)
        self.roles = Roles(db, clock, self.audit)
        self.permissions = Permissions(db)
        self.keys = KeyRing(
            db,
            clock,
            settings.key_cache_seconds,
            audit=self.audit,
            token_lifetime_seconds=settings.access_token_ttl,
            monotonic=monotonic,  # the key cache's clock (tests move it instead of sleeping)
        )
        self.sessions = Sessions(
            db, clock, self.audit, settings.session_ttl, settings.interaction_ttl, settings.known_device_ttl
        )
        self.console = ConsoleAccess(db, self.sessions, self.users, self.tenants, self.audit)
        self.mailer = Mailer(settings)
        self.sign_in_experiences = SignInExperiences(
            db, clock, self.audit, email_connector=settings.email_connector_configured
        )
        self.verification_codes = VerificationCodes(db, clock, self.audit)
        # Plain http to loopback upstreams only under the tests-only setting that lets fetches reach private addresses.
        self.connectors = Connectors(
            db, clock, self.audit, self.sign_in_experiences,
            allow_http_loopback=settings.cimd_allow_private_addresses,
        )  # fmt: skip
        self.mfa = Mfa(
            db, clock, self.audit, sessions=self.sessions, experiences=self.sign_in_experiences,
            codes=self.verification_codes, rate_limits=self.rate_limits,
            max_failures_per_user=settings.sign_in_max_failures_per_identifier,
            failure_window_seconds=settings.sign_in_failure_window,
        )  # fmt: skip
        # The RP id is the host of the public URL, the expected origin its origin.
        self.passkeys = Passkeys(db, clock, self.audit, self.sign_in_experiences, public_url=settings.public_url)
        # A passkey is a second factor too: users who have one are challenged for it, getUser lists them and
        # resetUserMfa removes them.
        self.mfa.register_factor(
            "passkey", self.passkeys.has_any_in, listing=self.passkeys.factors_in, removal=self.passkeys.remove_all_in
        )
        self.hosted_sign_in = HostedSignIn(
            db, clock, self.audit, tenants=self.tenants, users=self.users, tenant_users=self.tenant_users,
            experiences=self.sign_in_experiences, codes=self.verification_codes, sessions=self.sessions,
            connectors=self.connectors,
        )  # fmt: skip
        self.password_recovery = PasswordRecovery(
            db, clock, self.audit, tenants=self.tenants, experiences=self.sign_in_experiences,
            codes=self.verification_codes, rate_limits=self.rate_limits, public_url=settings.public_url,
        )  # fmt: skip
        self.administrator_sign_in = AdministratorSignIn(
            db, users=self.users, sessions=self.sessions, setup_codes=self.setup_codes
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Clock = utcnow, monotonic: Callable[[], float] = time.monotonic
    ) -> IdentityCore:
        return cls(settings, Database(engine_from_settings(settings)), clock, monotonic)

    def bootstrap(self) -> None:
        """Migrate, then make sure the default tenants, the signing keys and the server-wide keys (TOTP sealing,
        connector secrets and links) exist. Safe on
        every start.

        It runs before the server accepts requests, on the event loop's thread when uvicorn's worker processes
        build the app: blocking that loop then holds up no request, so the loop guard lets it.
        """
        with blocking_allowed("bootstrap, before the server accepts requests"):
            self.db.migrate()
            self.tenants.ensure_defaults()
            self.keys.ensure(ADMIN_TENANT_ID)
            self.keys.ensure(DEFAULT_TENANT_ID)
            self.mfa.ensure_sealing_key()
            self.connectors.ensure_keys()

    def close(self) -> None:
        self.db.dispose()
