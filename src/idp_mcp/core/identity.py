"""The identity core: one object that owns the database and every business service."""

from __future__ import annotations

from idp_mcp.core.applications import Applications
from idp_mcp.core.audit import AuditLog
from idp_mcp.core.clients import Clients
from idp_mcp.core.grants import Grants
from idp_mcp.core.keys import KeyRing
from idp_mcp.core.secrets import ClientSecrets
from idp_mcp.core.sessions import Sessions
from idp_mcp.core.tenants import Tenants
from idp_mcp.core.users import TenantUsers, Users
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Clock, utcnow
from idp_mcp.settings import Settings
from idp_mcp.store.db import Database, create_db_engine


class IdentityCore:
    def __init__(self, settings: Settings, db: Database, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.audit = AuditLog(db, clock)
        self.tenants = Tenants(db, clock, self.audit)
        self.users = Users(db, clock, self.audit)
        self.tenant_users = TenantUsers(db, clock, self.audit)
        self.applications = Applications(db, clock, self.audit)
        self.secrets = ClientSecrets(db, clock, self.audit, settings.temporary_secret_ttl)
        self.clients = Clients(db, clock, self.audit)
        self.grants = Grants(db, clock, self.audit)
        self.keys = KeyRing(db, clock)
        self.sessions = Sessions(db, clock, self.audit, settings.session_ttl, settings.interaction_ttl)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = utcnow) -> IdentityCore:
        return cls(settings, Database(create_db_engine(settings.resolved_database_url)), clock)

    def bootstrap(self) -> None:
        """Migrate, then make sure the default tenants and the signing keys exist. Safe on every start."""
        self.db.migrate()
        self.tenants.ensure_defaults()
        self.keys.ensure(ADMIN_TENANT_ID)
        self.keys.ensure(DEFAULT_TENANT_ID)

    def close(self) -> None:
        self.db.dispose()
