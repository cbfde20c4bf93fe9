"""Accounts: password hashing, users, roles, points, API tokens, who a request is (``/api/v1/me``), and every
``geoservice user`` command.

Core functions are called on a rolled-back connection; the HTTP side (tokens) through the Flask test client on users
committed by ``tests.accounts_helpers.add_user`` (the app connects as its own role); the commands as processes on
the suite's database (the prompt through click's runner, which stands in for the terminal).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, Type, extract_parameters
from click.testing import CliRunner

from geoservice import accounts
from geoservice.cli import main
from geoservice.errors import Conflict, InvalidParameter, NotFound
from tests.accounts_helpers import PASSWORD, add_user, unique_username
from tests.conftest import ROOT

# -- passwords -------------------------------------------------------------------------------------------------------

def test_passwords_are_hashed_with_argon2id():
    stored = accounts.hash_password("a long enough password")
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert params.type is Type.ID
    assert params.memory_cost >= 64 * 1024 and params.time_cost >= 3
    assert "a long enough password" not in stored
    # The library itself (not ours) accepts the hash: a standard PHC string.
    assert PasswordHasher().verify(stored, "a long enough password")


def test_verify_password():
    stored = accounts.hash_password("a long enough password")
    assert accounts.verify_password(stored, "a long enough password")
    assert not accounts.verify_password(stored, "a long enough passwore")
    assert not accounts.verify_password("not a hash", "a long enough password")
    # Two hashes of one password differ (a random salt each).
    assert accounts.hash_password("a long enough password") != stored


def test_the_stored_hash_is_argon2id(conn):
    accounts.create_user(conn, username="hash-check", display_name="H", role="planner", password=PASSWORD)
    stored = conn.execute(sa.text("SELECT password_hash FROM app_user WHERE username = 'hash-check'")).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.verify_password(stored, PASSWORD)


# -- users -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes,fragment", [
    ({"username": "A"}, "username must be 2-40 characters"),
    ({"username": "has space"}, "username must be"),
    ({"username": "x" * 41}, "username must be"),
    ({"role": "root"}, "role must be one of kiosk_staff, officer, planner, admin"),
    ({"role": "public"}, "role must be one of"),
    ({"display_name": "  "}, "display name must be 1-80 characters"),
    ({"display_name": "x" * 81}, "display name must be 1-80 characters"),
    ({"password": "short"}, "password must be 10 to 1024 characters long, got 5"),
    ({"password": "p" * 1025}, "password must be 10 to 1024 characters long"),
    ({"username": "samename12", "password": "SameName12"}, "password must not be the username"),
    ({"role": "officer"}, "an officer needs a squad"),
    ({"role": "officer", "squad_name": "无此中队"}, "no squad named '无此中队'; squads: "),
    ({"squad_name": "文博中队"}, "only officers belong to a squad"),
])
def test_create_user_refuses_bad_input(conn, changes, fragment):
    args = {"username": "new-user", "display_name": "New", "role": "planner", "password": PASSWORD, **changes}
    with pytest.raises(InvalidParameter) as exc:
        accounts.create_user(conn, **args)
    assert fragment in exc.value.description
    assert conn.execute(sa.text("SELECT count(*) FROM app_user WHERE username = :u"),
                        {"u": args["username"]}).scalar_one() == 0


def test_create_user_and_read_it_back(conn):
    user = accounts.create_user(conn, username="wang.wei", display_name=" 王伟 ", role="officer", password=PASSWORD,
                                squad_name="文博中队")
    row = conn.execute(sa.text("SELECT id, username, display_name, role, squad_name, disabled FROM app_user "
                               "WHERE username = 'wang.wei'")).one()
    assert (row.id, row.display_name, row.role, row.squad_name, row.disabled) == \
        (user.id, "王伟", "officer", "文博中队", False)
    assert accounts.load_user(conn, user.id) == user
    assert accounts.get_user(conn, "wang.wei") == user
    with pytest.raises(Conflict, match="exists already"):
        accounts.create_user(conn, username="wang.wei", display_name="x", role="planner", password=PASSWORD)


def test_assign_points_replaces_the_set_and_checks_ids(conn):
    ids = conn.execute(sa.text("SELECT id FROM point ORDER BY id LIMIT 3")).scalars().all()
    missing = conn.execute(sa.text("SELECT max(id) + 1000 FROM point")).scalar_one()
    accounts.create_user(conn, username="kiosk-a", display_name="K", role="kiosk_staff", password=PASSWORD)
    assert accounts.assign_points(conn, "kiosk-a", ids[:2]).point_ids == frozenset(ids[:2])
    assert accounts.assign_points(conn, "kiosk-a", [ids[2]]).point_ids == frozenset([ids[2]])
    in_db = conn.execute(sa.text("SELECT point_id FROM user_point JOIN app_user u ON u.id = user_id "
                                 "WHERE u.username = 'kiosk-a'")).scalars().all()
    assert in_db == [ids[2]]
    with pytest.raises(NotFound, match=f"no point with id {missing}"):
        accounts.assign_points(conn, "kiosk-a", [ids[0], missing])
    assert accounts.get_user(conn, "kiosk-a").point_ids == frozenset([ids[2]])  # unchanged by the refusal
    assert accounts.assign_points(conn, "kiosk-a", []).point_ids == frozenset()
    accounts.create_user(conn, username="plan-a", display_name="P", role="planner", password=PASSWORD)
    with pytest.raises(InvalidParameter, match="only kiosk_staff accounts are assigned points"):
        accounts.assign_points(conn, "plan-a", ids[:1])
    with pytest.raises(NotFound, match="no user named 'nobody'"):
        accounts.assign_points(conn, "nobody", ids[:1])


def test_set_role(conn):
    point_id = conn.execute(sa.text("SELECT min(id) FROM point")).scalar_one()
    accounts.create_user(conn, username="role-a", display_name="R", role="kiosk_staff", password=PASSWORD)
    accounts.assign_points(conn, "role-a", [point_id])
    with pytest.raises(InvalidParameter, match="an officer needs a squad"):
        accounts.set_role(conn, "role-a", "officer")
    user = accounts.set_role(conn, "role-a", "officer", squad_name="西关中队")
    assert (user.role, user.squad_name, user.point_ids) == ("officer", "西关中队", frozenset())
    user = accounts.set_role(conn, "role-a", "planner")
    assert (user.role, user.squad_name) == ("planner", None)
    with pytest.raises(InvalidParameter, match="role must be one of"):
        accounts.set_role(conn, "role-a", "superuser")


def test_disable_and_reset_password_move_the_session_epoch(conn):
    user = accounts.create_user(conn, username="epoch-a", display_name="E", role="planner", password=PASSWORD)
    accounts.reset_password(conn, "epoch-a", "another password 1")
    assert accounts.load_user(conn, user.id).session_epoch == user.session_epoch + 1
    stored = conn.execute(sa.text("SELECT password_hash FROM app_user WHERE id = :id"), {"id": user.id}).scalar_one()
    assert accounts.verify_password(stored, "another password 1") and not accounts.verify_password(stored, PASSWORD)
    with pytest.raises(InvalidParameter, match="password must be 10 to 1024"):
        accounts.reset_password(conn, "epoch-a", "short")
    accounts.disable(conn, "epoch-a")
    assert accounts.load_user(conn, user.id) is None
    assert conn.execute(sa.text("SELECT disabled, session_epoch FROM app_user WHERE id = :id"),
                        {"id": user.id}).one() == (True, user.session_epoch + 2)


# -- tokens ----------------------------------------------------------------------------------------------------------

def test_a_token_is_stored_hashed_and_revocable(conn):
    user = accounts.create_user(conn, username="token-a", display_name="T", role="planner", password=PASSWORD)
    token = accounts.create_token(conn, "token-a", name="nightly sync")
    row = conn.execute(sa.text("SELECT digest, prefix, revoked_at FROM api_token WHERE user_id = :id"),
                       {"id": user.id}).one()
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    stored = conn.execute(sa.text("SELECT to_jsonb(t)::text FROM api_token t WHERE user_id = :id"),
                          {"id": user.id}).scalar_one()
    assert token not in stored and token[8:] not in stored  # only the digest and an 8-character prefix
    assert row.prefix == token[:8] and row.revoked_at is None
    assert accounts.user_for_token(conn, token) == user
    assert accounts.user_for_token(conn, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    with pytest.raises(Conflict, match="already has a token named 'nightly sync'"):
        accounts.create_token(conn, "token-a", name="nightly sync")
    assert accounts.revoke_token(conn, "token-a", name="nightly sync") == 1
    assert accounts.user_for_token(conn, token) is None
    with pytest.raises(NotFound, match="no usable token named 'nightly sync'"):
        accounts.revoke_token(conn, "token-a", name="nightly sync")
    # The name is free again once revoked.
    again = accounts.create_token(conn, "token-a", name="nightly sync")
    assert accounts.user_for_token(conn, again) == user


def test_an_expired_token_or_a_disabled_account_acts_as_nobody(conn):
    accounts.create_user(conn, username="token-b", display_name="T", role="planner", password=PASSWORD)
    token = accounts.create_token(conn, "token-b", name="short", expires_days=1)
    assert accounts.user_for_token(conn, token) is not None
    conn.execute(sa.text("UPDATE api_token SET expires_at = now() - interval '1 second' WHERE name = 'short'"))
    assert accounts.user_for_token(conn, token) is None
    other = accounts.create_token(conn, "token-b", name="other")
    accounts.disable(conn, "token-b")
    assert accounts.user_for_token(conn, other) is None


@pytest.mark.parametrize("name,days,fragment", [
    ("", None, "token name must be 1-80 characters"),
    ("x" * 81, None, "token name must be 1-80 characters"),
    ("ok", 0, "expires_days must be between 1 and 3650"),
    ("ok", 3651, "expires_days must be between 1 and 3650"),
])
def test_create_token_refuses_bad_input(conn, name, days, fragment):
    accounts.create_user(conn, username="token-c", display_name="T", role="planner", password=PASSWORD)
    with pytest.raises(InvalidParameter, match=fragment):
        accounts.create_token(conn, "token-c", name=name, expires_days=days)


# -- who is asking, over HTTP ----------------------------------------------------------------------------------------

def test_me_is_null_for_the_public(client):
    response = client.get("/api/v1/me")
    assert response.status_code == 200 and response.get_json() == {"user": None}
    assert response.headers["Cache-Control"] == "no-store"


def test_me_with_a_token(client, engine):
    with engine.connect() as c:
        ids = c.execute(sa.text("SELECT id FROM point ORDER BY id DESC LIMIT 2")).scalars().all()
    user, token = add_user(engine, "kiosk_staff", points=ids, display_name="李娟")
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.get_json() == {
        "user": {"username": user.username, "display_name": "李娟", "role": "kiosk_staff",
                 "role_label": {"zh": "岗亭值守", "en": "Kiosk staff"}, "squad": None, "points": sorted(ids)},
        "csrf_token": None}
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT last_used_at IS NOT NULL FROM api_token t JOIN app_user u ON u.id = t.user_id "
                                 "WHERE u.username = :u"), {"u": user.username}).scalar_one()


def test_a_revoked_token_is_nobody(client, engine):
    user, token = add_user(engine, "planner")
    with engine.begin() as c:
        accounts.revoke_token(c, user.username, name="tests")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).get_json() == {"user": None}


def test_helpers_make_unique_users(engine):
    first, _ = add_user(engine, "officer")
    second, _ = add_user(engine, "officer", squad="东城中队")
    assert first.username != second.username and unique_username("planner") != unique_username("planner")
    assert (first.squad_name, second.squad_name) == ("文博中队", "东城中队")


# -- the command line ------------------------------------------------------------------------------------------------

def user_cli(settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``geoservice user …`` as a process on the suite's database, ``stdin`` on its standard input."""
    return subprocess.run([sys.executable, "-m", "geoservice", "user", *args], check=False, cwd=ROOT,
                          capture_output=True, text=True, input=stdin, timeout=120,
                          env={**os.environ, "DATABASE_URL": settings.database_url})


def account_row(engine, username: str):
    with engine.connect() as c:
        return c.execute(sa.text("SELECT * FROM app_user WHERE username = :u"), {"u": username}).first()


def one_line_error(result, code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.startswith("geoservice: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_no_user_command_takes_a_password_argument():
    # An argument shows in `ps` to every user of the machine: passwords come from a prompt or stdin only.
    group = main.commands["user"]
    commands = [*group.commands.values(), *group.commands["token"].commands.values()]
    for command in commands:
        for param in command.params:
            assert "password" not in param.name or (param.name == "password_stdin" and param.is_flag), command.name
    for path in (["--help"], ["add", "--help"], ["list", "--help"], ["set-role", "--help"], ["assign", "--help"],
                 ["disable", "--help"], ["reset-password", "--help"], ["token", "create", "--help"],
                 ["token", "revoke", "--help"]):
        result = CliRunner().invoke(main, ["user", *path])
        assert result.exit_code == 0 and "Usage:" in result.output, path


def test_user_add_with_password_stdin(settings, engine):
    name = unique_username("cli")
    result = user_cli(settings, "add", name, "--role", "officer", "--squad", "西关中队", "--name", "王伟",
                      "--password-stdin", stdin="a good password 1\nignored second line\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"user {name} added: officer (王伟), squad 西关中队\n"
    assert "a good password" not in result.stdout + result.stderr
    row = account_row(engine, name)
    assert (row.role, row.display_name, row.squad_name, row.disabled) == ("officer", "王伟", "西关中队", False)
    assert row.password_hash.startswith("$argon2id$") and accounts.verify_password(row.password_hash,
                                                                                   "a good password 1")


def test_user_add_asks_for_the_password_twice(settings, engine):
    name = unique_username("cli")
    result = CliRunner().invoke(main, ["user", "add", name, "--role", "planner"],
                                input="typed at the prompt\ntyped at the prompt\n",
                                env={"DATABASE_URL": settings.database_url})
    assert result.exit_code == 0, result.output
    assert "typed at the prompt" not in result.output  # never echoed
    assert accounts.verify_password(account_row(engine, name).password_hash, "typed at the prompt")
    assert account_row(engine, name).display_name == name  # the username when no --name


@pytest.mark.parametrize("args,stdin,code,fragment", [
    (["--role", "planner"], "short\n", 1, "password must be 10 to 1024 characters long, got 5"),
    (["--role", "planner"], "", 2, "--password-stdin: nothing on standard input"),
    (["--role", "officer"], "a good password 1\n", 1, "an officer needs a squad"),
    (["--role", "officer", "--squad", "无此中队"], "a good password 1\n", 1, "no squad named '无此中队'"),
    (["--role", "superuser"], "a good password 1\n", 2, "'superuser' is not one of"),
])
def test_user_add_refuses_bad_input(settings, engine, args, stdin, code, fragment):
    name = unique_username("cli")
    result = user_cli(settings, "add", name, *args, "--password-stdin", stdin=stdin)
    assert result.returncode == code and fragment in result.stderr, result.stderr
    if code == 1:
        one_line_error(result)
    assert account_row(engine, name) is None


def test_user_add_refuses_a_taken_name_and_a_bad_one(settings, engine):
    user, _ = add_user(engine, "planner")
    assert "exists already" in one_line_error(user_cli(settings, "add", user.username, "--role", "admin",
                                                       "--password-stdin", stdin="a good password 1\n"))
    assert "username must be 2-40 characters" in one_line_error(
        user_cli(settings, "add", "Upper Case", "--role", "admin", "--password-stdin", stdin="a good password 1\n"))


def test_user_list(settings, engine):
    with engine.connect() as c:
        ids = c.execute(sa.text("SELECT id FROM point ORDER BY id LIMIT 2")).scalars().all()
    staff, _ = add_user(engine, "kiosk_staff", points=ids, display_name="李娟")
    officer, _ = add_user(engine, "officer", squad="南关中队")
    with engine.begin() as c:
        accounts.disable(c, officer.username)
    result = user_cli(settings, "list")
    assert result.returncode == 0, result.stderr
    lines = {line.split("\t")[0]: line for line in result.stdout.splitlines()}
    assert lines[staff.username] == (f"{staff.username}\tkiosk_staff\t李娟\tpoints {ids[0]},{ids[1]}\ttokens 1\t"
                                     "active")
    assert lines[officer.username].endswith("\tsquad 南关中队\ttokens 1\tdisabled")
    assert [name for name in lines] == sorted(lines)


def test_user_set_role(settings, engine):
    user, _ = add_user(engine, "kiosk_staff")
    result = user_cli(settings, "set-role", user.username, "officer", "--squad", "东城中队")
    assert result.returncode == 0 and result.stdout == f"user {user.username} is now officer, squad 东城中队\n"
    assert (account_row(engine, user.username).role, account_row(engine, user.username).squad_name) == \
        ("officer", "东城中队")
    assert "an officer needs a squad" in one_line_error(user_cli(settings, "set-role", user.username, "officer"))
    assert "no user named 'nobody-here'" in one_line_error(user_cli(settings, "set-role", "nobody-here", "admin"))
    assert user_cli(settings, "set-role", user.username, "root").returncode == 2


def test_user_assign(settings, engine):
    user, _ = add_user(engine, "kiosk_staff")
    with engine.connect() as c:
        ids = c.execute(sa.text("SELECT id FROM point ORDER BY id DESC LIMIT 3")).scalars().all()
        missing = c.execute(sa.text("SELECT max(id) + 1 FROM point")).scalar_one()

    def assigned() -> list[int]:
        with engine.connect() as c:
            return c.execute(sa.text("SELECT point_id FROM user_point WHERE user_id = :id ORDER BY point_id"),
                             {"id": user.id}).scalars().all()

    result = user_cli(settings, "assign", user.username, *map(str, ids))
    assert result.returncode == 0 and assigned() == sorted(ids)
    assert result.stdout == f"user {user.username} looks after points: {', '.join(map(str, sorted(ids)))}\n"
    assert f"no point with id {missing}" in one_line_error(user_cli(settings, "assign", user.username, str(missing)))
    assert assigned() == sorted(ids)
    neither = user_cli(settings, "assign", user.username)
    assert neither.returncode == 2 and "or --clear" in neither.stderr
    assert user_cli(settings, "assign", user.username, "--clear").returncode == 0 and assigned() == []
    assert user_cli(settings, "assign", user.username, "0").returncode == 2  # ids are positive


def test_user_disable_and_reset_password(settings, engine):
    user, token = add_user(engine, "planner")
    epoch = account_row(engine, user.username).session_epoch
    result = user_cli(settings, "reset-password", user.username, "--password-stdin", stdin="the new password\n")
    assert result.returncode == 0, result.stderr
    row = account_row(engine, user.username)
    assert accounts.verify_password(row.password_hash, "the new password") and row.session_epoch == epoch + 1
    assert "password must be 10" in one_line_error(
        user_cli(settings, "reset-password", user.username, "--password-stdin", stdin="tiny\n"))
    assert user_cli(settings, "disable", user.username).returncode == 0
    row = account_row(engine, user.username)
    assert row.disabled and row.session_epoch == epoch + 2
    with engine.connect() as c:
        assert accounts.user_for_token(c, token) is None
    assert "no user named" in one_line_error(user_cli(settings, "disable", "nobody-here"))


def test_user_token_create_and_revoke(settings, engine):
    user, _ = add_user(engine, "planner")
    result = user_cli(settings, "token", "create", user.username, "--name", "field tablet", "--expires-days", "30")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.startswith("gs_")  # alone on stdout, for scripts to capture
    assert "shown once" in result.stderr
    with engine.connect() as c:
        row = c.execute(sa.text("SELECT digest, expires_at - created_at AS lifetime FROM api_token "
                                "WHERE user_id = :id AND name = 'field tablet'"), {"id": user.id}).one()
        assert row.digest == hashlib.sha256(token.encode()).hexdigest() and row.lifetime.days == 30
        assert accounts.user_for_token(c, token).username == user.username
    assert "already has a token named" in one_line_error(
        user_cli(settings, "token", "create", user.username, "--name", "field tablet"))
    result = user_cli(settings, "token", "revoke", user.username, "--name", "field tablet")
    assert result.returncode == 0 and result.stdout == f"token 'field tablet' of {user.username} revoked\n"
    with engine.connect() as c:
        assert accounts.user_for_token(c, token) is None
    assert "no usable token named 'field tablet'" in one_line_error(
        user_cli(settings, "token", "revoke", user.username, "--name", "field tablet"))
    assert user_cli(settings, "token", "create", user.username).returncode == 2  # --name is required
