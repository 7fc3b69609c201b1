"""Dashboard accounts, API tokens and signed session cookies.

Roles: the ten user groups of :data:`bright.network.access.USER_GROUPS` plus ``public``. What each
may see and do through the APIs is the role table of docs/roles.md. On the dashboard:

- ``manager``: every page of the node (all members' data, the entity browser);
- ``member``: the open pages plus their own member page (and their own sharing and statement lines);
- every other role (``school_staff``, ``researcher``, ...) and ``public``: the open-data view
  (community cards and aggregates), the same as a visitor who did not log in.

API tokens (``api_tokens`` table, migration step 70) are bearer credentials for the REST and
NGSI-LD APIs: ``brt_<id>_<secret>``, 32 random bytes of secret; only the SHA-256 of the secret is
stored (a random 256-bit secret needs no slow hash), and the token is shown once, at creation.

Accounts live in the ``web_users`` table (migration step 60); passwords are stored as scrypt hashes
(``hashlib.scrypt``, n=2^14, r=8, p=1, 16-byte salt). The session is a cookie
``base64url(json) "." hex(HMAC-SHA256(secret, base64url(json)))`` with an expiry; the secret is
32 random bytes generated on first start and kept in ``web-secret.key`` (mode 0600) in the node's
data directory (``BRIGHT_DATA_DIR``, else the directory of the SQLite file, else ``./.bright``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url

from bright.network.access import USER_GROUPS, Principal
from bright.twin import migrations

__all__ = [
    "DEMO_USERS",
    "ROLES",
    "ApiToken",
    "SessionSigner",
    "User",
    "UserInputError",
    "add_demo_users",
    "authenticate",
    "create_token",
    "create_user",
    "data_dir",
    "hash_password",
    "list_tokens",
    "node_secret",
    "revoke_token",
    "token_principal",
    "user_principal",
    "verify_password",
]

ROLES = (*USER_GROUPS, "public")
SESSION_SECONDS = 12 * 3600
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}

metadata = MetaData()
users_table = Table(
    "web_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(32), nullable=False),
    Column("community_id", String(512), nullable=True),
    Column("member_id", String(512), nullable=True),
)
tokens_table = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("community_id", String(512), nullable=True),
    Column("member_id", String(512), nullable=True),
    Column("tenant", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)


def _create(conn: Connection) -> None:
    users_table.create(conn, checkfirst=True)


def _tokens_and_wider_roles(conn: Connection) -> None:
    # Role names of the ten user groups are longer than the 16 characters of step 60.
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE web_users ALTER COLUMN role TYPE VARCHAR(32)")
    tokens_table.create(conn, checkfirst=True)


migrations.register(60, "web: dashboard accounts", _create)
migrations.register(70, "access: API tokens, longer role names", _tokens_and_wider_roles)


class UserInputError(ValueError):
    """A bad account (unknown role, member account without a member, empty name or password)."""


@dataclass(frozen=True)
class User:
    """A dashboard account (or the anonymous visitor: ``username`` None, role ``public``).

    Attributes
    ----------
    username
        Login name; None for an anonymous visitor.
    role
        One of :data:`ROLES` (``manager``, ``member``, ``researcher``... or ``public``).
    community_id, member_id
        The member's community and EnergyProsumer id (member accounts only).
    """

    username: str | None
    role: str
    community_id: str | None = None
    member_id: str | None = None

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"

    def may_see_member(self, member_id: str) -> bool:
        """Whether this account may see the member's own data (manager: all; member: itself)."""
        return self.is_manager or (self.role == "member" and self.member_id == member_id)


ANONYMOUS = User(None, "public")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$<salt hex>$<key hex>`` of a password (scrypt n=2^14, r=8, p=1)."""
    salt = salt or secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, maxmem=64 * 1024 * 1024, **_SCRYPT)
    return f"scrypt${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (constant-time comparison)."""
    try:
        scheme, salt_hex, key_hex = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, maxmem=64 * 1024 * 1024, **_SCRYPT)
    return hmac.compare_digest(key.hex(), key_hex)


def create_user(
    engine: Engine,
    username: str,
    password: str,
    role: str,
    *,
    community_id: str | None = None,
    member_id: str | None = None,
) -> User:
    """Create or replace an account.

    Raises
    ------
    UserInputError
        Empty user name or password, unknown role, a member account without ``member_id``.
    """
    if not username.strip() or len(username) > 64:
        raise UserInputError(f"user name {username!r} must have 1 to 64 characters")
    if not password:
        raise UserInputError(f"user {username!r}: the password must not be empty")
    if role not in ROLES:
        raise UserInputError(f"user {username!r}: role {role!r} is not one of {', '.join(ROLES)}")
    if role == "member" and not member_id:
        raise UserInputError(f"user {username!r}: a member account needs member_id")
    migrations.migrate(engine)
    row = {
        "password_hash": hash_password(password),
        "role": role,
        "community_id": community_id,
        "member_id": member_id,
    }
    with engine.begin() as conn:
        found = conn.execute(select(users_table.c.username).where(users_table.c.username == username)).first()
        if found:
            conn.execute(update(users_table).where(users_table.c.username == username).values(**row))
        else:
            conn.execute(insert(users_table).values(username=username, **row))
    return User(username, role, community_id, member_id)


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    """The account if the password is right, else None (same work for unknown users)."""
    migrations.migrate(engine)
    with engine.connect() as conn:
        row = conn.execute(select(users_table).where(users_table.c.username == username)).mappings().first()
    if row is None:
        verify_password(password, hash_password("timing-equaliser", salt=b"\0" * 16))
        return None
    if not verify_password(password, str(row["password_hash"])):
        return None
    return User(str(row["username"]), str(row["role"]), row["community_id"], row["member_id"])


#: The demo accounts (user name, password, role); the member is the demo's first household.
DEMO_USERS = (
    ("manager", "manager-demo", "manager"),
    ("member", "member-demo", "member"),
    ("public", "public-demo", "public"),
)


def add_demo_users(engine: Engine, community_id: str, member_id: str) -> list[User]:
    """Create the demo accounts of :data:`DEMO_USERS` (``member`` is ``member_id`` of ``community_id``)."""
    out = []
    for name, password, role in DEMO_USERS:
        extra = {"community_id": community_id, "member_id": member_id} if role == "member" else {}
        out.append(create_user(engine, name, password, role, **extra))
    return out


def data_dir(database_url: str) -> Path:
    """The node's data directory: ``BRIGHT_DATA_DIR``, the SQLite file's directory, or ``./.bright``."""
    env = os.environ.get("BRIGHT_DATA_DIR")
    if env:
        return Path(env)
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent
    return Path.cwd() / ".bright"


def node_secret(directory: Path) -> bytes:
    """The node's session secret (32 bytes), created with mode 0600 on first use."""
    path = directory / "web-secret.key"
    if path.exists():
        return bytes.fromhex(path.read_text("ascii").strip())
    directory.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secret.hex())
    return secret


class SessionSigner:
    """Sign and check session cookies with HMAC-SHA256.

    Parameters
    ----------
    secret
        The node secret (see :func:`node_secret`).
    max_age_s
        Lifetime of a session, seconds.
    """

    def __init__(self, secret: bytes, *, max_age_s: int = SESSION_SECONDS) -> None:
        self._secret = secret
        self.max_age_s = max_age_s

    def _mac(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).hexdigest()

    def dumps(self, user: User, *, now: float | None = None) -> str:
        """The cookie value for ``user``."""
        body = {
            "u": user.username,
            "r": user.role,
            "c": user.community_id,
            "m": user.member_id,
            "exp": int((now or time.time()) + self.max_age_s),
        }
        payload = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()
        return f"{payload}.{self._mac(payload)}"

    def loads(self, cookie: str | None, *, now: float | None = None) -> User:
        """The user of a cookie; the anonymous visitor when absent, forged, malformed or expired."""
        if not cookie or "." not in cookie:
            return ANONYMOUS
        payload, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(self._mac(payload), mac):
            return ANONYMOUS
        try:
            body = json.loads(base64.urlsafe_b64decode(payload.encode()))
        except ValueError:
            return ANONYMOUS
        if not isinstance(body, dict) or body.get("r") not in ROLES:
            return ANONYMOUS
        if float(body.get("exp", 0)) < (now or time.time()):
            return ANONYMOUS
        return User(body.get("u"), str(body["r"]), body.get("c"), body.get("m"))


# --------------------------------------------------------------------------------------------------
# API tokens
# --------------------------------------------------------------------------------------------------

TOKEN_PREFIX = "brt_"


@dataclass(frozen=True)
class ApiToken:
    """An API token as listed (never with its secret).

    Attributes
    ----------
    token_id
        Public identifier (the ``<id>`` of ``brt_<id>_<secret>``).
    name
        What the manager called it (``city-dashboard``, ``school-staff``...).
    role
        One of :data:`ROLES`.
    community_id, member_id, tenant
        What the holder belongs to (member tokens: their EnergyProsumer) and the NGSI-LD tenant
        (None: the default tenant).
    created_at, revoked_at
        UTC instants; ``revoked_at`` None while the token is valid.
    created_by
        The manager who created it.
    """

    token_id: str
    name: str
    role: str
    community_id: str | None
    member_id: str | None
    tenant: str | None
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.token_id,
            "name": self.name,
            "role": self.role,
            "communityId": self.community_id,
            "memberId": self.member_id,
            "tenant": self.tenant,
            "createdAt": self.created_at.isoformat().replace("+00:00", "Z"),
            "createdBy": self.created_by,
            "revokedAt": self.revoked_at.isoformat().replace("+00:00", "Z") if self.revoked_at else None,
        }


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _token_row(row: Any) -> ApiToken:
    created = _utc(row["created_at"])
    assert created is not None
    return ApiToken(
        str(row["token_id"]),
        str(row["name"]),
        str(row["role"]),
        row["community_id"],
        row["member_id"],
        row["tenant"],
        created,
        row["created_by"],
        _utc(row["revoked_at"]),
    )


def create_token(
    engine: Engine,
    name: str,
    role: str,
    *,
    community_id: str | None = None,
    member_id: str | None = None,
    tenant: str | None = None,
    created_by: str | None = None,
) -> tuple[ApiToken, str]:
    """Create an API token; returns it and its secret value ``brt_<id>_<secret>`` (shown once).

    Raises
    ------
    UserInputError
        Empty or too long name, unknown role (``peer`` tokens do not exist: peers sign their
        requests), a member token without ``member_id``.
    """
    if not name.strip() or len(name) > 128:
        raise UserInputError(f"token name {name!r} must have 1 to 128 characters")
    if role not in ROLES:
        raise UserInputError(f"token {name!r}: role {role!r} is not one of {', '.join(ROLES)}")
    if role == "member" and not member_id:
        raise UserInputError(f"token {name!r}: a member token needs member_id")
    migrations.migrate(engine)
    token_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    value = f"{TOKEN_PREFIX}{token_id}_{secret}"
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(tokens_table).values(
                token_id=token_id,
                name=name,
                secret_sha256=_sha256(secret),
                role=role,
                community_id=community_id,
                member_id=member_id,
                tenant=tenant or None,
                created_at=now,
                created_by=created_by,
                revoked_at=None,
            )
        )
    return ApiToken(
        token_id, name, role, community_id, member_id, tenant or None, now, created_by, None
    ), value


def list_tokens(engine: Engine, *, include_revoked: bool = True) -> list[ApiToken]:
    """Every API token, oldest first (never their secrets)."""
    migrations.migrate(engine)
    stmt = select(tokens_table).order_by(tokens_table.c.created_at, tokens_table.c.token_id)
    if not include_revoked:
        stmt = stmt.where(tokens_table.c.revoked_at.is_(None))
    with engine.connect() as conn:
        return [_token_row(r) for r in conn.execute(stmt).mappings()]


def revoke_token(engine: Engine, token_id: str) -> ApiToken:
    """Revoke a token (kept, with the revocation instant, for the audit trail).

    Raises
    ------
    UserInputError
        No token with that id.
    """
    migrations.migrate(engine)
    with engine.begin() as conn:
        row = conn.execute(select(tokens_table).where(tokens_table.c.token_id == token_id)).mappings().first()
        if row is None:
            raise UserInputError(f"no API token with id {token_id!r}")
        if row["revoked_at"] is None:
            conn.execute(
                update(tokens_table)
                .where(tokens_table.c.token_id == token_id)
                .values(revoked_at=datetime.now(UTC))
            )
        row = conn.execute(select(tokens_table).where(tokens_table.c.token_id == token_id)).mappings().first()
    return _token_row(row)


def token_principal(engine: Engine, value: str) -> Principal | None:
    """The principal of a bearer token value, or None when it is malformed, unknown or revoked.

    The secret is compared in constant time against its stored SHA-256.
    """
    if not value.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = value[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not token_id or not secret or len(token_id) > 32:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(tokens_table).where(tokens_table.c.token_id == token_id)).mappings().first()
    if row is None:
        hmac.compare_digest(_sha256(secret), "0" * 64)
        return None
    if not hmac.compare_digest(_sha256(secret), str(row["secret_sha256"])) or row["revoked_at"] is not None:
        return None
    return Principal(
        role=str(row["role"]),
        subject=f"token:{row['name']}",
        kind="user",
        community_id=row["community_id"],
        member_id=row["member_id"],
        tenant=row["tenant"],
        attributes={"token_id": str(row["token_id"])},
    )


def user_principal(user: User) -> Principal:
    """The principal of a logged-in dashboard account (the anonymous one for the visitor)."""
    if user.username is None:
        return Principal()
    return Principal(
        role=user.role,
        subject=user.username,
        kind="user",
        community_id=user.community_id,
        member_id=user.member_id,
        attributes={"session": True},
    )
