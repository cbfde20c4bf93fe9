"""Accounts for tests of every workstream: ``add_user`` makes a user of a role and an API token for it.

Pass an **Engine** when a served app or the Flask test client must see the user: the account is committed in its own
transaction (usernames are unique per call, so tests never collide; the suite's database is made afresh each run).
Pass a **Connection** to create it inside that connection's transaction (rolled back with it; only code given the
same connection sees the user — e.g. core functions called directly).
"""

from __future__ import annotations

import itertools
import os

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geoservice import accounts
from geoservice.accounts import User

PASSWORD = "melon-season-2023"
_numbers = itertools.count(1)


def unique_username(role: str) -> str:
    """A username no other call in this run has used (role, process id, counter)."""
    return f"{role.replace('_', '-')}-{os.getpid()}-{next(_numbers)}"


def add_user(conn: Connection | Engine, role: str, *, username: str | None = None, squad: str | None = None,
             points: tuple[int, ...] | list[int] = (), password: str = PASSWORD,
             display_name: str | None = None) -> tuple[User, str]:
    """Create a user of ``role`` and an API token for it.

    Args:
        conn: an Engine (committed at once) or a Connection (inside its transaction); see the module docstring.
        role: one of ``accounts.ROLES``.
        username: default a fresh unique one.
        squad: an officer's squad name (default the city's first squad by id); ignored for other roles.
        points: a kiosk staff member's assigned point ids.
        password: the account's password (default ``PASSWORD``).
        display_name: default "Test <role> <n>".

    Returns:
        The user (with its points) and a plaintext API token (``Authorization: Bearer <token>``).
    """
    if isinstance(conn, Engine):
        with conn.begin() as connection:
            return add_user(connection, role, username=username, squad=squad, points=points, password=password,
                            display_name=display_name)
    username = username or unique_username(role)
    if role == "officer" and squad is None:
        squad = conn.execute(sa.text("SELECT name FROM squad ORDER BY id LIMIT 1")).scalar_one()
    accounts.create_user(conn, username=username, display_name=display_name or f"Test {role} {username}",
                         role=role, password=password, squad_name=squad if role == "officer" else None)
    if points:
        accounts.assign_points(conn, username, points)
    token = accounts.create_token(conn, username, name="tests")
    return accounts.get_user(conn, username), token
