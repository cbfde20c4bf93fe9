"""Who may change the city: accounts, roles, and the acting user every write carries.

Roles (stored on ``app_user.role``, migration 0003); the public has no account and reads everything:

- ``kiosk_staff`` — the points assigned to them (``user_point``): occupancy, status and notice only.
- ``officer`` — points inside their squad's grids: status, opening hours, season, amenities, capacity, occupancy
  and notice. Nothing outside those grids.
- ``planner`` — creates, moves, edits and deletes points; edits grids (geometry, officer, squad) and squads.
- ``admin`` — manages users and their roles. An admin edits no data (separation of duties: give a person two
  accounts when they need both).

Every write in :mod:`geoservice.editing` takes an :class:`Actor`: the user, and where the request came from (for
the audit log).

The functions below take a SQLAlchemy connection and commit nothing (the caller does); no Flask. Accounts are
created and changed by the command line as the database owner (``geoservice user …``); the web app's role only
reads them, counts failed logins and notes a token's last use. Passwords are stored as Argon2id hashes
(argon2-cffi), API tokens as SHA-256 digests (a token is shown once). A disable or a password reset moves the
account's ``session_epoch`` on, which ends every session signed before it (``geoservice.web.auth``).
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection

from geoservice.config import Settings
from geoservice.errors import Conflict, InvalidParameter, NotFound, TooManyAttempts, Unauthorized

ROLES: tuple[str, ...] = ("kiosk_staff", "officer", "planner", "admin")
"""The roles an account may have, least to most trusted in what they manage."""
SEES_HIDDEN: tuple[str, ...] = ("planner", "admin")
"""The roles that see the rows the public does not (``catalogue.Table.hidden``: planned points)."""

ROLE_LABELS: dict[str, tuple[str, str]] = {
    "kiosk_staff": ("岗亭值守", "Kiosk staff"),
    "officer": ("中队队员", "Squad officer"),
    "planner": ("规划人员", "Planner"),
    "admin": ("管理员", "Administrator"),
}
"""zh-CN and English names of the roles, shown in every page's corner."""

LIVE_FIELDS: tuple[str, ...] = ("occupancy", "status", "notice")
"""The point fields kiosk staff may change on their own points."""

OFFICER_POINT_FIELDS: tuple[str, ...] = ("status", "opening_hours", "season", "amenities", "capacity", "occupancy",
                                         "notice")
"""The point fields an officer may change on points inside their squad's grids."""


@dataclass(frozen=True, kw_only=True)
class User:
    """An account as a request sees it (never its password hash)."""

    id: int
    username: str
    display_name: str
    role: str
    squad_name: str | None = None
    point_ids: frozenset[int] = frozenset()
    """For kiosk staff: the points assigned to them."""
    session_epoch: int = 0
    """Moved forward by a disable or a password reset: a session signed at an older epoch has ended."""


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who makes a change and from where: what the audit log records."""

    user: User
    address: str | None = None
    user_agent: str | None = None


# -- passwords ---------------------------------------------------------------------------------------------------

USERNAME_PATTERN = re.compile(r"[a-z0-9_.-]{2,40}")
"""What a username may be (the database checks the same: ``app_user_username_format``)."""
DISPLAY_NAME_MAX_CHARS = 80
PASSWORD_MIN_CHARS = 10
PASSWORD_MAX_CHARS = 1024
"""Longer input is refused before hashing: a megabyte "password" must not cost the server anything."""

# Argon2id with the parameters of RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes): about 50 ms on
# a server core, and memory-hard, so a stolen table is slow to guess on GPUs.
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4, hash_len=32, salt_len=16, type=Type.ID)


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password`` (PHC string: algorithm, parameters, salt and hash)."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (False for a hash that is not Argon2, never an exception)."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _unknown_user_hash() -> str:
    """A hash checked when the username is unknown, so that a wrong name costs as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def check_password(password: str, *, username: str) -> None:
    """Refuse a password that is too short, too long or the username itself.

    Raises:
        InvalidParameter: naming what a password must be.
    """
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise InvalidParameter(f"password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters long, "
                               f"got {len(password)}")
    if password.strip().lower() == username.lower():
        raise InvalidParameter("password must not be the username")


def _check_username(username: str) -> str:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidParameter(f"username must be 2-40 characters of a-z, 0-9, '_', '.' or '-', got {username!r}")
    return username


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidParameter(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def _check_squad(conn: Connection, role: str, squad_name: str | None) -> str | None:
    """An officer's squad must be a squad of the city; other roles have none."""
    if role != "officer":
        if squad_name is not None:
            raise InvalidParameter(f"only officers belong to a squad; a {role} has none (leave the squad out)")
        return None
    if not squad_name or not squad_name.strip():
        raise InvalidParameter("an officer needs a squad: give the squad's name, e.g. 文博中队")
    squad_name = squad_name.strip()
    names = conn.execute(sa.text("SELECT name FROM squad ORDER BY name")).scalars().all()
    if squad_name not in names:
        known = ", ".join(names[:20]) + (" …" if len(names) > 20 else "") if names else "none imported yet"
        raise InvalidParameter(f"no squad named {squad_name!r}; squads: {known}")
    return squad_name


# -- accounts (managed by the command line, as the owner) ----------------------------------------------------------

_USER_COLUMNS = """
    u.id, u.username, u.display_name, u.role, u.squad_name, u.session_epoch, u.disabled,
    coalesce((SELECT array_agg(up.point_id ORDER BY up.point_id) FROM user_point up WHERE up.user_id = u.id),
             '{}') AS point_ids
"""


def _to_user(row: Any) -> User:
    return User(id=row.id, username=row.username, display_name=row.display_name, role=row.role,
                squad_name=row.squad_name, point_ids=frozenset(row.point_ids), session_epoch=row.session_epoch)


def _row(conn: Connection, username: str) -> Any:
    row = conn.execute(sa.text(f"SELECT {_USER_COLUMNS} FROM app_user u WHERE u.username = :u"),
                       {"u": username}).first()
    if row is None:
        raise NotFound(f"no user named {username!r} (`geoservice user list` shows them)")
    return row


def get_user(conn: Connection, username: str) -> User:
    """The account named ``username``, disabled or not.

    Raises:
        NotFound: there is no such account.
    """
    return _to_user(_row(conn, username))


def load_user(conn: Connection, user_id: int) -> User | None:
    """The account with id ``user_id`` as a request sees it; None when there is none or it is disabled."""
    row = conn.execute(sa.text(f"SELECT {_USER_COLUMNS} FROM app_user u WHERE u.id = :id AND NOT u.disabled"),
                       {"id": user_id}).first()
    return None if row is None else _to_user(row)


def create_user(conn: Connection, *, username: str, display_name: str, role: str, password: str,
                squad_name: str | None = None) -> User:
    """Create an account.

    Args:
        conn: a connection as the owner (the web app's role may not write accounts); the caller commits.
        username: 2-40 characters of ``a-z 0-9 _ . -``.
        display_name: the name shown in the pages' corner (1-80 characters).
        role: one of :data:`ROLES`.
        password: checked by :func:`check_password`, stored as its Argon2id hash.
        squad_name: an officer's squad (required for officers, refused for other roles).

    Raises:
        InvalidParameter: a value is not allowed (the message says what is).
        Conflict: the username is taken.
    """
    _check_username(username)
    _check_role(role)
    display_name = display_name.strip()
    if not 1 <= len(display_name) <= DISPLAY_NAME_MAX_CHARS:
        raise InvalidParameter(f"display name must be 1-{DISPLAY_NAME_MAX_CHARS} characters, got "
                               f"{len(display_name)}")
    squad_name = _check_squad(conn, role, squad_name)
    check_password(password, username=username)
    if conn.execute(sa.text("SELECT 1 FROM app_user WHERE username = :u"), {"u": username}).first():
        raise Conflict(f"a user named {username!r} exists already")
    user_id = conn.execute(sa.text(
        "INSERT INTO app_user (username, display_name, role, squad_name, password_hash) "
        "VALUES (:u, :d, :r, :s, :h) RETURNING id"),
        {"u": username, "d": display_name, "r": role, "s": squad_name, "h": hash_password(password)}).scalar_one()
    return User(id=user_id, username=username, display_name=display_name, role=role, squad_name=squad_name)


@dataclass(frozen=True, kw_only=True)
class Account:
    """An account as an administrator lists it."""

    user: User
    disabled: bool
    active_tokens: int
    created_at: datetime


def list_users(conn: Connection) -> list[Account]:
    """Every account, by username, with whether it is disabled and how many tokens it may still use."""
    rows = conn.execute(sa.text(f"""
        SELECT {_USER_COLUMNS}, u.created_at,
               (SELECT count(*) FROM api_token t WHERE t.user_id = u.id AND t.revoked_at IS NULL
                  AND (t.expires_at IS NULL OR t.expires_at > now())) AS active_tokens
        FROM app_user u ORDER BY u.username""")).all()
    return [Account(user=_to_user(r), disabled=r.disabled, active_tokens=r.active_tokens, created_at=r.created_at)
            for r in rows]


def set_role(conn: Connection, username: str, role: str, *, squad_name: str | None = None) -> User:
    """Give ``username`` the role ``role`` (an officer with ``squad_name``).

    Assigned points are kept only for kiosk staff: another role has none. The user's sessions see the new role on
    their next request.

    Raises:
        NotFound: no such account.
        InvalidParameter: an unknown role, or a squad missing for an officer (or given for another role).
    """
    row = _row(conn, username)
    _check_role(role)
    squad_name = _check_squad(conn, role, squad_name)
    conn.execute(sa.text("UPDATE app_user SET role = :r, squad_name = :s WHERE id = :id"),
                 {"r": role, "s": squad_name, "id": row.id})
    if role != "kiosk_staff":
        conn.execute(sa.text("DELETE FROM user_point WHERE user_id = :id"), {"id": row.id})
    return get_user(conn, username)


def assign_points(conn: Connection, username: str, point_ids: Iterable[int]) -> User:
    """Make ``point_ids`` the points kiosk staff ``username`` looks after (replacing any before; none clears).

    Raises:
        NotFound: no such account, or a point id that is not in the point table (all such ids are named).
        InvalidParameter: the account is not kiosk staff.
    """
    row = _row(conn, username)
    if row.role != "kiosk_staff":
        raise InvalidParameter(f"only kiosk_staff accounts are assigned points; {username!r} is a {row.role}")
    ids = sorted(set(point_ids))
    if ids:
        found = set(conn.execute(sa.text("SELECT id FROM point WHERE id = ANY(:ids)"), {"ids": ids}).scalars())
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"no point with id {', '.join(map(str, missing))}")
    conn.execute(sa.text("DELETE FROM user_point WHERE user_id = :id"), {"id": row.id})
    if ids:
        conn.execute(sa.text("INSERT INTO user_point (user_id, point_id) SELECT :id, unnest(CAST(:ids AS integer[]))"),
                     {"id": row.id, "ids": ids})
    return get_user(conn, username)


def disable(conn: Connection, username: str) -> None:
    """Disable ``username``: every session ends at its next request, its tokens stop working, it cannot log in.

    Raises:
        NotFound: no such account.
    """
    row = _row(conn, username)
    conn.execute(sa.text("UPDATE app_user SET disabled = true, session_epoch = session_epoch + 1 WHERE id = :id"),
                 {"id": row.id})


def reset_password(conn: Connection, username: str, password: str) -> None:
    """Set a new password for ``username``; its sessions end, and its failed logins are forgotten.

    Raises:
        NotFound: no such account.
        InvalidParameter: the password is not allowed (:func:`check_password`).
    """
    row = _row(conn, username)
    check_password(password, username=username)
    conn.execute(sa.text("UPDATE app_user SET password_hash = :h, session_epoch = session_epoch + 1 WHERE id = :id"),
                 {"h": hash_password(password), "id": row.id})
    conn.execute(sa.text("DELETE FROM login_failure WHERE username = :u"), {"u": username})


# -- API tokens ----------------------------------------------------------------------------------------------------

TOKEN_PREFIX = "gs_"
"""Every token starts with this, so that a leaked one is recognisable (and found by secret scanners)."""
TOKEN_NAME_MAX_CHARS = 80


def _digest(token: str) -> str:
    # A token has 256 random bits: a plain SHA-256 is enough to store it (no guessing to slow down, unlike a password).
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn: Connection, username: str, *, name: str, expires_days: int | None = None) -> str:
    """A new API token for ``username``; the plaintext is returned once and only its SHA-256 is kept.

    Args:
        conn: a connection as the owner; the caller commits.
        username: the account the token acts as.
        name: what the token is for (unique among the account's usable tokens; used to revoke it).
        expires_days: the token stops working after this many days (1-3650); never when None.

    Raises:
        NotFound: no such account.
        InvalidParameter: an empty or over-long name, or an expiry out of range.
        Conflict: the account has a usable token of that name.
    """
    row = _row(conn, username)
    name = name.strip()
    if not 1 <= len(name) <= TOKEN_NAME_MAX_CHARS:
        raise InvalidParameter(f"token name must be 1-{TOKEN_NAME_MAX_CHARS} characters, got {len(name)}")
    if expires_days is not None and not 1 <= expires_days <= 3650:
        raise InvalidParameter(f"expires_days must be between 1 and 3650, got {expires_days}")
    if _usable_tokens(conn, row.id, name):
        raise Conflict(f"{username!r} already has a token named {name!r}; revoke it or choose another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(sa.text(
        "INSERT INTO api_token (user_id, name, digest, prefix, expires_at) VALUES (:id, :n, :d, :p, "
        "CASE WHEN CAST(:days AS integer) IS NULL THEN NULL ELSE now() + make_interval(days => :days) END)"),
        {"id": row.id, "n": name, "d": _digest(token), "p": token[:8], "days": expires_days})
    return token


def _usable_tokens(conn: Connection, user_id: int, name: str) -> list[int]:
    return conn.execute(sa.text(
        "SELECT id FROM api_token WHERE user_id = :id AND name = :n AND revoked_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > now())"), {"id": user_id, "n": name}).scalars().all()


def revoke_token(conn: Connection, username: str, *, name: str) -> int:
    """Revoke ``username``'s usable token named ``name``: it stops working at once. Returns how many were revoked.

    Raises:
        NotFound: no such account, or no usable token of that name.
    """
    row = _row(conn, username)
    ids = _usable_tokens(conn, row.id, name.strip())
    if not ids:
        raise NotFound(f"{username!r} has no usable token named {name!r}")
    conn.execute(sa.text("UPDATE api_token SET revoked_at = now() WHERE id = ANY(:ids)"), {"ids": ids})
    return len(ids)


def user_for_token(conn: Connection, token: str) -> User | None:
    """The account a token acts as; None for an unknown, revoked or expired token or a disabled account.

    Notes the token's last use (at most once a minute; the caller commits).
    """
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    found = conn.execute(sa.text(
        "SELECT id, user_id FROM api_token WHERE digest = :d AND revoked_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > now())"), {"d": _digest(token)}).first()
    if found is None:
        return None
    user = load_user(conn, found.user_id)
    if user is not None:
        conn.execute(sa.text("UPDATE api_token SET last_used_at = now() WHERE id = :id "
                             "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"),
                     {"id": found.id})
    return user


# -- logging in ----------------------------------------------------------------------------------------------------

# Advisory lock namespaces ("gsLu", "gsLa" as int4): one account's (one address's) login attempts are counted one
# after the other across every app process, so parallel guesses cannot all slip under the limit.
_ACCOUNT_LOCKS = 0x67734C75
_ADDRESS_LOCKS = 0x67734C61


class DisabledAccount(Unauthorized):
    """The password is right, but the account is disabled."""


def authenticate(conn: Connection, *, username: str, password: str, address: str, settings: Settings) -> User:
    """The account ``username`` when ``password`` is its password, else a refusal; failures are counted.

    Failed logins are rows of ``login_failure``, counted per account and per address within
    ``settings.login_window_minutes``; at ``login_max_failures`` (per account) or ``login_address_max_failures``
    (per address) further attempts are refused without checking the password until the oldest counted failure
    leaves the window. A success forgets the account's failures.

    So that the limit holds across every process, an attempt first reserves its place: under transaction-level
    advisory locks on the account and the address it counts the failures and writes a ``login_failure`` row, and
    commits. Only then is the password checked (Argon2id takes tens of milliseconds; no lock is held meanwhile): a
    wrong one leaves the row as the failure, a right one deletes it with the account's other failures. Parallel
    guesses therefore count as failures while they are checked, and no more than the limit are ever checked.

    Args:
        conn: a connection outside any transaction block (this function commits on it); the web app's role may
            insert and delete login failures.
        username: as typed (compared in lower case).
        password: as typed.
        address: the client's address (``request.remote_addr`` behind the trusted proxies).
        settings: the login limits.

    Raises:
        TooManyAttempts: the account or the address is over its limit (``retry_after`` in seconds).
        DisabledAccount: the password is right, the account disabled.
        Unauthorized: a wrong username or password.
    """
    username = username.strip().lower()[:100]
    attempt = _reserve_attempt(conn, username, address, settings)
    row = conn.execute(sa.text("SELECT id, password_hash, disabled FROM app_user WHERE username = :u"),
                       {"u": username}).first()
    conn.commit()  # no transaction stays open while the password is hashed
    if row is None:
        verify_password(_unknown_user_hash(), password)  # as slow as a wrong password
        raise Unauthorized("wrong username or password")
    if not verify_password(row.password_hash, password):
        raise Unauthorized("wrong username or password")
    if row.disabled:
        conn.execute(sa.text("DELETE FROM login_failure WHERE id = :id"), {"id": attempt})
        conn.commit()
        raise DisabledAccount("this account is disabled; ask an administrator")
    conn.execute(sa.text("DELETE FROM login_failure WHERE username = :u"), {"u": username})
    user = load_user(conn, row.id)
    conn.commit()
    if user is None:  # disabled between the two reads
        raise DisabledAccount("this account is disabled; ask an administrator")
    return user


def _reserve_attempt(conn: Connection, username: str, address: str, settings: Settings) -> int:
    """Count the failures of the account and the address and, under the limits, record this attempt as one.

    Returns:
        The id of the attempt's ``login_failure`` row (committed).

    Raises:
        TooManyAttempts: over a limit (nothing recorded).
    """
    window = settings.login_window_minutes
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:u))"), {"ns": _ACCOUNT_LOCKS, "u": username})
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:a))"), {"ns": _ADDRESS_LOCKS, "a": address})
    conn.execute(sa.text("DELETE FROM login_failure WHERE (username = :u OR address = :a) "
                         "AND at < now() - make_interval(mins => :w)"), {"u": username, "a": address, "w": window})
    for column, value, limit, whom in (("username", username, settings.login_max_failures, "this account"),
                                       ("address", address, settings.login_address_max_failures, "this address")):
        wait = _seconds_until_allowed(conn, column, value, limit, window)
        if wait is not None:
            conn.commit()
            raise TooManyAttempts(f"too many failed logins for {whom}: at most {limit} in {window} minutes; try "
                                  f"again in {wait} seconds", retry_after=wait)
    attempt = conn.execute(sa.text("INSERT INTO login_failure (username, address) VALUES (:u, :a) RETURNING id"),
                           {"u": username, "a": address}).scalar_one()
    conn.commit()
    return attempt


def _seconds_until_allowed(conn: Connection, column: str, value: str, limit: int, window: int) -> int | None:
    """Seconds until an attempt is allowed again, or None when it is allowed now.

    None when fewer than ``limit`` failures of ``column = value`` lie in the window; else the seconds until the
    ``limit``-th newest leaves it.
    """
    seconds = conn.execute(sa.text(f"""
        SELECT extract(epoch FROM at + make_interval(mins => :w) - now()) FROM login_failure
        WHERE {column} = :v AND at >= now() - make_interval(mins => :w)
        ORDER BY at DESC OFFSET :k LIMIT 1"""), {"v": value, "w": window, "k": limit - 1}).scalar()
    return None if seconds is None else max(1, math.ceil(seconds))
