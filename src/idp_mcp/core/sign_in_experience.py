"""Each tenant's sign-in experience: branding, sign-in methods and sign-up, as one validated, versioned document.

Every change is merged into the current document and the whole result is validated before anything is written, so
a contradiction (email codes without an email connector, sign-up asking for an identifier users cannot sign in with,
no sign-in method left) is refused with a sentence that says what to do, and the version does not move. The
document is stored as JSON with the same camelCase field names the MCP tools use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from idp_mcp.core.audit import AuditLog
from idp_mcp.core.brand_colours import BrandColours, brand_colours
from idp_mcp.core.custom_css import check_custom_css
from idp_mcp.domain import Actor, Clock
from idp_mcp.errors import IdpError, ValidationFailed
from idp_mcp.store.db import Database
from idp_mcp.store.repos import connectors as connectors_repo
from idp_mcp.store.repos import sign_in_experiences as repo

DarkMode = Literal["on", "off", "auto"]
Identifier = Literal["email", "username"]
MfaPolicyName = Literal["off", "optional", "required"]
MfaFactor = Literal["totp", "email", "passkey"]
MFA_POLICIES: tuple[MfaPolicyName, ...] = ("off", "optional", "required")
MFA_FACTORS: tuple[MfaFactor, ...] = ("totp", "email", "passkey")
IDENTIFIERS: tuple[Identifier, ...] = ("email", "username")
DEFAULT_PRIMARY_COLOR = "#5d34f2"
DEFAULT_DARK_PRIMARY_COLOR = "#8f74ff"
MAX_DISPLAY_NAME = 64
MAX_URL = 2048
_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
NO_SMS = "Phone sign-in needs an SMS connector, which this server does not have; use email or username instead."
NO_SMTP = (
    "Email codes need an email (SMTP) connector, and this server has none. Ask the server's operator to set "
    "IDP_MCP_SMTP_HOST and IDP_MCP_SMTP_FROM (and restart it), or use password instead of verificationCode."
)


class ExperienceConflict(IdpError):
    code = "sign_in_experience.conflict"
    status = 409


@dataclass(frozen=True)
class Branding:
    display_name: str | None = None
    logo_url: str | None = None
    dark_logo_url: str | None = None
    favicon_url: str | None = None
    primary_color: str = DEFAULT_PRIMARY_COLOR
    dark_primary_color: str | None = None  # None: the primary colour (or the default's dark variant)
    dark_mode: DarkMode = "auto"
    custom_css: str = ""
    terms_of_use_url: str | None = None
    privacy_policy_url: str | None = None

    @property
    def effective_dark_primary_color(self) -> str:
        """The primary colour on dark backgrounds: the one set for dark, else the primary colour itself."""
        if self.dark_primary_color:
            return self.dark_primary_color
        return DEFAULT_DARK_PRIMARY_COLOR if self.primary_color == DEFAULT_PRIMARY_COLOR else self.primary_color

    def colours(self) -> BrandColours:
        """The colours the hosted pages use: the chosen ones where they read at WCAG AA (4.5:1), else the nearest
        variants that do, with what was adjusted. The branding itself keeps the colours as chosen, so a later change
        (of a colour or of the dark mode) starts again from them."""
        return brand_colours(
            self.primary_color,
            self.effective_dark_primary_color,
            dark_primary_field="darkPrimaryColor" if self.dark_primary_color else "primaryColor",
            dark_mode=self.dark_mode,
        )


@dataclass(frozen=True)
class SignInMethod:
    """One identifier users type, and how they prove it is theirs."""

    identifier: Identifier
    password: bool
    verification_code: bool


@dataclass(frozen=True)
class SignUp:
    enabled: bool = False
    identifiers: tuple[Identifier, ...] = ("email",)
    password: bool = True
    verify_email: bool = False


@dataclass(frozen=True)
class MfaPolicy:
    """When users prove a second factor, and which factors they may use.

    - ``off``: nobody is asked, unless an application asks for it (``acr_values``, see ``core.mfa``);
    - ``optional``: users who enrolled a factor are asked for it; the others may enroll from the hosted page;
    - ``required``: every user proves a second factor, enrolling one at their next sign-in if they have none.

    Backup codes come with every TOTP or passkey enrollment. ``passkey_first``: a passkey may be the first factor
    (passwordless sign-in; the passkeys module reads it).
    """

    policy: MfaPolicyName = "off"
    factors: tuple[MfaFactor, ...] = ("totp",)
    passkey_first: bool = False

    def document(self) -> dict[str, Any]:
        return {"policy": self.policy, "factors": list(self.factors), "passkeyFirst": self.passkey_first}


MFA_FIELDS = ("policy", "factors", "passkeyFirst")


def merge_mfa(current: MfaPolicy, changes: Mapping[str, Any]) -> MfaPolicy:
    """``current`` with the given fields of an MFA policy changed, each checked on its own."""
    _refuse_unknown(changes, MFA_FIELDS, "MFA policy")
    values: dict[str, Any] = {}
    if "policy" in changes:
        if changes["policy"] not in MFA_POLICIES:
            raise ValidationFailed(
                "policy must be 'off' (no second factor unless an app asks), 'optional' (users may enroll) or "
                "'required' (every user proves a second factor)."
            )
        values["policy"] = changes["policy"]
    if "factors" in changes:
        given = changes["factors"]
        if not isinstance(given, list | tuple) or any(item not in MFA_FACTORS for item in given):
            raise ValidationFailed("factors must be a list of 'totp', 'email' and 'passkey', such as ['totp'].")
        values["factors"] = tuple(dict.fromkeys(cast("list[MfaFactor]", list(given))))
    if "passkeyFirst" in changes:
        values["passkey_first"] = _flag(changes["passkeyFirst"], "passkeyFirst")
    return replace(current, **values)


def check_mfa(mfa: MfaPolicy, *, email_connector: bool) -> None:
    """Refuse an MFA policy that could not work on this server, with what to change."""
    if mfa.policy != "off" and not mfa.factors:
        raise ValidationFailed(
            f"An MFA policy '{mfa.policy}' needs at least one factor users can enroll: for example factors ['totp']."
        )
    if "email" in mfa.factors and not email_connector:
        raise ValidationFailed(
            NO_SMTP.replace("Email codes need", "An email code as second factor needs").replace(
                "use password instead of verificationCode", "leave 'email' out of factors"
            )
        )
    if mfa.passkey_first and "passkey" not in mfa.factors:
        raise ValidationFailed("passkeyFirst needs 'passkey' among the factors: add it, or set passkeyFirst to false.")


DEFAULT_METHODS = (
    SignInMethod("email", password=True, verification_code=False),
    SignInMethod("username", password=True, verification_code=False),
)


@dataclass(frozen=True)
class SignInExperience:
    tenant_id: str
    version: int  # 0 until the first change: the default experience
    branding: Branding
    sign_in_methods: tuple[SignInMethod, ...]
    sign_up: SignUp
    updated_at: datetime | None
    social: tuple[str, ...] = ()  # connector ids, in the order of their "Continue with …" buttons
    mfa: MfaPolicy = MfaPolicy()

    @property
    def password_identifiers(self) -> tuple[Identifier, ...]:
        """The identifiers users may sign in with by password, in the order the page shows them."""
        return tuple(method.identifier for method in self.sign_in_methods if method.password)

    @property
    def email_code(self) -> bool:
        """Whether users may sign in with a code sent to their email."""
        return any(m.identifier == "email" and m.verification_code for m in self.sign_in_methods)

    def document(self) -> dict[str, Any]:
        """The stored (and agent-facing) form, with camelCase field names."""
        return {
            "branding": {name: getattr(self.branding, attr) for name, attr in BRANDING_FIELDS.items()},
            "signIn": {
                "methods": [_method_document(method) for method in self.sign_in_methods],
                "social": list(self.social),
            },
            "signUp": {
                "enabled": self.sign_up.enabled,
                "identifiers": list(self.sign_up.identifiers),
                "password": self.sign_up.password,
                "verifyEmail": self.sign_up.verify_email,
            },
            "mfa": self.mfa.document(),
        }


@dataclass(frozen=True)
class ExperienceUpdate:
    experience: SignInExperience
    changed: tuple[str, ...]  # field paths such as "branding.logoUrl", "signIn.methods", "signUp.enabled"
    summary: str


# --- field checks -------------------------------------------------------------------------------------------------


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be a string.")
    return value


def _display_name(value: Any) -> str | None:
    clean = " ".join(_text(value, "displayName").split())
    if len(clean) > MAX_DISPLAY_NAME:
        raise ValidationFailed(f"displayName is too long: at most {MAX_DISPLAY_NAME} characters.")
    return clean or None


def https_url(value: Any, field: str) -> str:
    """An absolute https URL without credentials, or :class:`ValidationFailed` naming ``field``."""
    url = _text(value, field).strip()
    shown = url[:80]
    if len(url) > MAX_URL:
        raise ValidationFailed(f"{field} is too long: at most {MAX_URL} characters.")
    if any(char.isspace() or ord(char) < 32 or char in "\"'<>\\`" for char in url):
        raise ValidationFailed(f"{field} must be a URL without spaces, quotes or angle brackets.")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        raise ValidationFailed(f"{field}: '{shown}' is not a valid URL.") from None
    if parts.scheme.lower() != "https" or not host:
        raise ValidationFailed(f"{field} must be an https URL (https://…); '{shown}' is not.")
    if "@" in parts.netloc:
        raise ValidationFailed(f"{field} must not contain a user name or password.")
    return url


def color(value: Any, field: str) -> str:
    text = _text(value, field).strip()
    if not _COLOR.match(text):
        raise ValidationFailed(
            f"{field} must be a colour written #rgb or #rrggbb (for example #5d34f2), not '{text[:40]}'."
        )
    return text.lower()


def _dark_mode(value: Any) -> DarkMode:
    if value not in ("on", "off", "auto"):
        raise ValidationFailed(
            "darkMode must be 'on' (always dark), 'off' (always light) or 'auto' (follow the device)."
        )
    return cast(DarkMode, value)


def _optional_url(field: str) -> Callable[[Any], str | None]:
    return lambda value: https_url(value, field)


BRANDING_FIELDS: dict[str, str] = {
    "displayName": "display_name",
    "logoUrl": "logo_url",
    "darkLogoUrl": "dark_logo_url",
    "faviconUrl": "favicon_url",
    "primaryColor": "primary_color",
    "darkPrimaryColor": "dark_primary_color",
    "darkMode": "dark_mode",
    "customCss": "custom_css",
    "termsOfUseUrl": "terms_of_use_url",
    "privacyPolicyUrl": "privacy_policy_url",
}
_BRANDING_CHECKS: dict[str, Callable[[Any], Any]] = {
    "displayName": _display_name,
    "logoUrl": _optional_url("logoUrl"),
    "darkLogoUrl": _optional_url("darkLogoUrl"),
    "faviconUrl": _optional_url("faviconUrl"),
    "primaryColor": lambda value: color(value, "primaryColor"),
    "darkPrimaryColor": lambda value: color(value, "darkPrimaryColor"),
    "darkMode": _dark_mode,
    "customCss": lambda value: check_custom_css(_text(value, "customCss")),
    "termsOfUseUrl": _optional_url("termsOfUseUrl"),
    "privacyPolicyUrl": _optional_url("privacyPolicyUrl"),
}
SIGN_UP_FIELDS = ("enabled", "identifiers", "password", "verifyEmail")


def _refuse_unknown(given: Mapping[str, Any], known: Any, what: str) -> None:
    unknown = sorted(str(key) for key in given if key not in known)
    if unknown:
        raise ValidationFailed(f"Unknown {what} field '{unknown[0][:40]}'. The fields are: {', '.join(known)}.")


def merge_branding(current: Branding, changes: Mapping[str, Any]) -> Branding:
    """``current`` with ``changes`` applied; a change to None puts the field back to its default."""
    _refuse_unknown(changes, BRANDING_FIELDS, "branding")
    values: dict[str, Any] = {}
    for name, value in changes.items():
        attr = BRANDING_FIELDS[name]
        values[attr] = Branding.__dataclass_fields__[attr].default if value is None else _BRANDING_CHECKS[name](value)
    return replace(current, **values)


def _identifier(value: Any, field: str) -> Identifier:
    if value == "phone":
        raise ValidationFailed(NO_SMS)
    if value not in IDENTIFIERS:
        raise ValidationFailed(f"{field} must be 'email' or 'username', not '{str(value)[:40]}'.")
    return cast(Identifier, value)


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed(f"{field} must be true or false.")
    return value


def parse_methods(value: Any) -> tuple[SignInMethod, ...]:
    """The ordered sign-in methods, each checked on its own (the whole document is checked later)."""
    if not isinstance(value, list | tuple):
        raise ValidationFailed("methods must be a list such as [{identifier: 'email', password: true}].")
    methods: list[SignInMethod] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise ValidationFailed("Each sign-in method is an object such as {identifier: 'email', password: true}.")
        _refuse_unknown(item, ("identifier", "password", "verificationCode"), "sign-in method")
        identifier = _identifier(item.get("identifier"), "identifier")
        method = SignInMethod(
            identifier,
            password=_flag(item.get("password", False), "password"),
            verification_code=_flag(item.get("verificationCode", False), "verificationCode"),
        )
        if not method.password and not method.verification_code:
            raise ValidationFailed(
                f"The {identifier} sign-in method has no way to prove the account is the user's: set password: true, "
                "verificationCode: true, or both."
            )
        if identifier == "username" and method.verification_code:
            raise ValidationFailed(
                "A username has no address to send a code to: use password for username, and verificationCode "
                "with email."
            )
        if any(existing.identifier == identifier for existing in methods):
            raise ValidationFailed(
                f"{identifier} is listed twice: list each identifier once, in the order to show them."
            )
        methods.append(method)
    return tuple(methods)


def merge_sign_up(current: SignUp, changes: Mapping[str, Any]) -> SignUp:
    _refuse_unknown(changes, SIGN_UP_FIELDS, "sign-up")
    values: dict[str, Any] = {}
    if "enabled" in changes:
        values["enabled"] = _flag(changes["enabled"], "enabled")
    if "identifiers" in changes:
        given = changes["identifiers"]
        if not isinstance(given, list | tuple):
            raise ValidationFailed("identifiers must be a list: ['email'], ['username'] or ['email', 'username'].")
        values["identifiers"] = tuple(dict.fromkeys(_identifier(item, "identifiers") for item in given))
    if "password" in changes:
        values["password"] = _flag(changes["password"], "password")
    if "verifyEmail" in changes:
        values["verify_email"] = _flag(changes["verifyEmail"], "verifyEmail")
    return replace(current, **values)


def check_consistency(methods: tuple[SignInMethod, ...], sign_up: SignUp, *, email_connector: bool) -> None:
    """Refuse a document that contradicts itself or the server, with what to change."""
    if not methods:
        raise ValidationFailed(
            "Keep at least one sign-in method, or nobody could sign in: for example "
            "[{identifier: 'email', password: true}]."
        )
    if any(method.verification_code for method in methods) and not email_connector:
        raise ValidationFailed(NO_SMTP)
    if not sign_up.enabled:
        return
    if not sign_up.identifiers:
        raise ValidationFailed("Sign-up needs at least one identifier: identifiers ['email'], ['username'] or both.")
    offered = {method.identifier for method in methods}
    for identifier in sign_up.identifiers:
        if identifier not in offered:
            raise ValidationFailed(
                f"Sign-up asks for {identifier}, but {identifier} is not a sign-in method, so new users could not sign "
                f"in with it. Add a {identifier} sign-in method (updateSignInMethod), or leave {identifier} out of the "
                "sign-up identifiers (updateSignUpMethod)."
            )
    if sign_up.verify_email and "email" not in sign_up.identifiers:
        raise ValidationFailed("verifyEmail needs email among the sign-up identifiers: add 'email' or set it to false.")
    if sign_up.verify_email and not email_connector:
        raise ValidationFailed(NO_SMTP.replace("Email codes need", "Verifying email at sign-up needs"))
    code_sign_in = any(m.identifier == "email" and m.verification_code for m in methods)
    if not sign_up.password and not (sign_up.verify_email and code_sign_in):
        raise ValidationFailed(
            "Sign-up without a password leaves users no way to sign in unless they get codes by email: either set "
            "password: true, or require email with verifyEmail: true and keep an email sign-in method with "
            "verificationCode: true."
        )


# --- the stored document --------------------------------------------------------------------------------------


def _method_document(method: SignInMethod) -> dict[str, Any]:
    return {"identifier": method.identifier, "password": method.password, "verificationCode": method.verification_code}


def default_experience(tenant_id: str) -> SignInExperience:
    return SignInExperience(tenant_id, 0, Branding(), DEFAULT_METHODS, SignUp(), None)


def _from_row(tenant_id: str, row: Any) -> SignInExperience:
    if row is None:
        return default_experience(tenant_id)
    document = dict(row.document)
    return SignInExperience(
        tenant_id=tenant_id,
        version=int(row.version),
        branding=merge_branding(Branding(), document.get("branding", {})),
        sign_in_methods=parse_methods(document.get("signIn", {}).get("methods", [])),
        sign_up=merge_sign_up(SignUp(), document.get("signUp", {})),
        updated_at=row.updated_at,
        social=tuple(str(item) for item in document.get("signIn", {}).get("social", [])),
        mfa=merge_mfa(MfaPolicy(), document.get("mfa", {})),
    )


def _flatten(experience: SignInExperience) -> dict[str, Any]:
    document = experience.document()
    flat = {f"branding.{name}": value for name, value in document["branding"].items()}
    flat["signIn.methods"] = document["signIn"]["methods"]
    flat["signIn.social"] = document["signIn"]["social"]
    flat.update({f"signUp.{name}": value for name, value in document["signUp"].items()})
    flat.update({f"mfa.{name}": value for name, value in document["mfa"].items()})
    return flat


def _describe_value(path: str, value: Any) -> str:
    if value is None:
        return "none"
    if path == "branding.customCss":
        return f"{len(value.encode())} bytes of CSS" if value else "none"
    if path == "signIn.methods":
        ways = []
        for method in value:
            proofs = [name for name, key in (("password", "password"), ("code", "verificationCode")) if method[key]]
            ways.append(f"{method['identifier']} ({' or '.join(proofs)})")
        return ", ".join(ways)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return " and ".join(value) or "none"
    return str(value)


def _summary(changed: list[str], before: dict[str, Any], after: dict[str, Any], version: int) -> str:
    parts = [
        f"{path.split('.', 1)[1]} {_describe_value(path, before[path])} → {_describe_value(path, after[path])}"
        for path in changed
    ]
    return f"Version {version}: " + "; ".join(parts) + "."


class SignInExperiences:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog, *, email_connector: bool) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self.email_connector = email_connector
        # The parsed, validated experience of each tenant as last read, reused while the stored version is the same.
        # Checked against the database on every read (one small query), so a change made through another replica
        # shows on the next read; never expired by time. One entry per tenant; plain dict operations are atomic.
        self._cache: dict[str, SignInExperience] = {}

    def get(self, tenant_id: str) -> SignInExperience:
        """The tenant's experience; the default one (version 0) until it is first changed."""
        with self._db.read() as conn:
            return self.get_in(conn, tenant_id)

    def get_in(self, conn: Connection, tenant_id: str) -> SignInExperience:
        """:meth:`get`, read in the caller's transaction: the stored version is read, and the document only when
        it differs from the cached one (parsing and validating it is most of the cost of a read)."""
        stamp = repo.stamp(conn, tenant_id)
        if stamp is None:
            self._cache.pop(tenant_id, None)
            return default_experience(tenant_id)
        cached = self._cache.get(tenant_id)
        if cached is not None and (cached.version, cached.updated_at) == stamp:
            return cached
        experience = _from_row(tenant_id, repo.get(conn, tenant_id))
        self._cache[tenant_id] = experience
        return experience

    def update_branding(self, tenant_id: str, changes: Mapping[str, Any], actor: Actor) -> ExperienceUpdate:
        """Change the branding fields given; None puts a field back to its default."""
        return self._update(
            tenant_id, lambda current: replace(current, branding=merge_branding(current.branding, changes)), actor
        )

    def update_sign_in(self, tenant_id: str, changes: Mapping[str, Any], actor: Actor) -> ExperienceUpdate:
        """Replace the ordered list of sign-in methods (``{"methods": [...]}``) and/or the ordered connector buttons
        (``{"social": [connectorId, ...]}``)."""
        _refuse_unknown(changes, ("methods", "social"), "sign-in")
        if "methods" not in changes and "social" not in changes:
            raise ValidationFailed(
                "Give methods (the complete, ordered list of sign-in methods), social (the connector ids of the "
                "'Continue with …' buttons, in order), or both."
            )
        methods = parse_methods(changes["methods"]) if "methods" in changes else None
        # The connector ids are checked in the update's transaction: a connector deleted meanwhile is not shown.
        with self._db.unit_of_work(writes=True):
            social = self._social(tenant_id, changes["social"]) if "social" in changes else None

            def apply(current: SignInExperience) -> SignInExperience:
                return replace(
                    current,
                    sign_in_methods=current.sign_in_methods if methods is None else methods,
                    social=current.social if social is None else social,
                )

            return self._update(tenant_id, apply, actor)

    def _social(self, tenant_id: str, value: Any) -> tuple[str, ...]:
        """Connector ids of this tenant, each once, at most ten."""
        if not isinstance(value, list | tuple) or len(value) > 10:
            raise ValidationFailed("social must be a list of at most 10 connector ids (listConnectors shows them).")
        with self._db.read() as conn:
            known = {row.id for row in connectors_repo.list_for_tenant(conn, tenant_id)}
        ids: list[str] = []
        for item in value:
            if not isinstance(item, str) or item not in known:
                raise ValidationFailed(
                    f"'{str(item)[:64]}' is not a connector of this tenant. Call listConnectors for the ids, or "
                    "createConnector first."
                )
            if item in ids:
                raise ValidationFailed(f"The connector {item} is listed twice in social: list each one once.")
            ids.append(item)
        return tuple(ids)

    def update_sign_up(self, tenant_id: str, changes: Mapping[str, Any], actor: Actor) -> ExperienceUpdate:
        """Change the sign-up fields given; the others stay as they are."""
        return self._update(
            tenant_id, lambda current: replace(current, sign_up=merge_sign_up(current.sign_up, changes)), actor
        )

    def update_mfa(self, tenant_id: str, changes: Mapping[str, Any], actor: Actor) -> ExperienceUpdate:
        """Change the MFA policy fields given (policy, factors, passkeyFirst); the others stay as they are."""
        return self._update(tenant_id, lambda current: replace(current, mfa=merge_mfa(current.mfa, changes)), actor)

    def _update(
        self, tenant_id: str, apply: Callable[[SignInExperience], SignInExperience], actor: Actor
    ) -> ExperienceUpdate:
        try:
            return self._update_once(tenant_id, apply, actor)
        except IntegrityError:
            # Another writer created the first version between our read and our insert: the row exists now, so
            # the second attempt locks it and applies this change on top of that one.
            pass
        try:
            return self._update_once(tenant_id, apply, actor)
        except IntegrityError as exc:
            raise ExperienceConflict(
                "The sign-in experience changed while this update was applied. Read it again and repeat the change."
            ) from exc

    def _update_once(
        self, tenant_id: str, apply: Callable[[SignInExperience], SignInExperience], actor: Actor
    ) -> ExperienceUpdate:
        now = self._clock()
        with self._db.transaction() as conn:
            # Locked (PostgreSQL) until the write, so concurrent changes of different fields queue and all apply;
            # the version check below stays as a second guard.
            row = repo.get(conn, tenant_id, for_update=True)
            current = _from_row(tenant_id, row)
            proposed = apply(current)
            check_consistency(proposed.sign_in_methods, proposed.sign_up, email_connector=self.email_connector)
            if proposed.mfa != current.mfa:  # a stored policy stays readable if the SMTP connector goes away later
                check_mfa(proposed.mfa, email_connector=self.email_connector)
            before, after = _flatten(current), _flatten(proposed)
            changed = [path for path in after if after[path] != before[path]]
            if not changed:
                self._audit.ride(conn)
                return ExperienceUpdate(current, (), f"Nothing changed: version {current.version} stays.")
            document = proposed.document()
            if row is None:
                repo.insert_first(conn, tenant_id, document, now)
            elif not repo.replace(conn, tenant_id, current.version, document, now):
                raise ExperienceConflict(
                    "The sign-in experience changed while this update was applied. Read it again "
                    "(getSignInExperience) and repeat the change."
                )
            version = current.version + 1
            self._audit.write(
                conn, actor, "sign_in_experience.update", target_type="sign_in_experience", target_id=tenant_id,
                tenant_id=tenant_id,
                details={"changed": changed, "version": version, "values": {path: after[path] for path in changed}},
            )  # fmt: skip
        updated = replace(proposed, version=version, updated_at=now)
        return ExperienceUpdate(updated, tuple(changed), _summary(changed, before, after, version))
