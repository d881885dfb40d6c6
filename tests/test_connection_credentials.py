"""Non-ASCII MariaDB passwords through JetbaseHook, on the real server.

PyMySQL encodes a ``str`` password as Latin-1; the server compares the UTF-8 bytes the account was
created with. The provider hands PyMySQL the UTF-8 bytes, so such logins work, and a wrong one
fails as an authentication error that holds no form of the password.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

# "pässwörd" fits Latin-1, so PyMySQL sent the wrong bytes ("Access denied"); "✓" does not, so
# PyMySQL raised a UnicodeEncodeError holding the password.
PASSWORDS = ["pässwörd", "pässwörd✓"]
WRONG_PASSWORD = "пароль✓-wrong"


def define_connection(monkeypatch: pytest.MonkeyPatch, value: dict[str, Any]) -> str:
    conn_id = f"jb_cred_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))
    return conn_id


def _run(url: URL, *statements: str, params: dict[str, Any] | None = None) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement), params or {})
    finally:
        engine.dispose()


@pytest.fixture(params=PASSWORDS, ids=["latin1", "beyond_latin1"])
def unicode_login(request: pytest.FixtureRequest, mysql_url: URL) -> Iterator[tuple[URL, str]]:
    """A MariaDB user identified by a non-ASCII password with all rights on ``mysql_url``'s fresh
    database, and that password; the user is dropped afterwards. The URL has no password."""
    password: str = request.param
    user = f"jb_u_{uuid.uuid4().hex[:10]}"
    # utf8mb4 makes the server hash the password's UTF-8 bytes, as a UTF-8 client would send them.
    admin = mysql_url.set(query={"charset": "utf8mb4"})
    _run(admin, f"CREATE USER '{user}'@'%' IDENTIFIED BY :pw", params={"pw": password})
    try:
        _run(admin, f"GRANT ALL PRIVILEGES ON `{mysql_url.database}`.* TO '{user}'@'%'")
        yield mysql_url.set(username=user, password=None), password
    finally:
        _run(admin, f"DROP USER IF EXISTS '{user}'@'%'")


def _fields(url: URL, password: str) -> dict[str, Any]:
    return {
        "conn_type": "mysql",
        "host": url.host,
        "port": url.port,
        "login": url.username,
        "password": password,
        "schema": url.database,
        "extra": {"connect_timeout": 5},
    }


def _jetbase_fields(url: URL, password: str) -> dict[str, Any]:
    return {
        "conn_type": "jetbase",
        "password": password,
        "extra": {"sqlalchemy_url": url.render_as_string(hide_password=False)},
    }


def _select_one(hook: JetbaseHook) -> Any:
    engine = hook.get_sqlalchemy_engine()
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar()
    finally:
        engine.dispose()


@pytest.mark.mysql
@pytest.mark.parametrize("conn_type", ["mysql", "jetbase"])
def test_non_ascii_mysql_password_logs_in(
    monkeypatch: pytest.MonkeyPatch, unicode_login: tuple[URL, str], conn_type: str
) -> None:
    url, password = unicode_login
    make = _fields if conn_type == "mysql" else _jetbase_fields
    hook = JetbaseHook(define_connection(monkeypatch, make(url, password)))
    assert _select_one(hook) == 1
    ok, message = hook.test_connection()
    assert ok, message


def _password_forms(password: str) -> list[str]:
    forms = [password, repr(password), password.encode("utf-8").hex()]
    for encoding in ("utf-8", "latin-1"):
        try:
            raw = password.encode(encoding)
        except UnicodeEncodeError:
            continue
        forms += [repr(raw), str(raw), repr(raw)[2:-1]]
    return forms


def _assert_no_password(exc: BaseException, password: str) -> None:
    seen: list[str] = []
    chain: BaseException | None = exc
    while chain is not None:
        seen += [str(chain), repr(chain), repr(chain.args)]
        chain = chain.__cause__ or chain.__context__
    rendered = "\n".join(seen)
    for form in _password_forms(password):
        assert form not in rendered, (form, rendered)
    # Also the part outside Latin-1 alone, in case an encoder error quotes a slice of it.
    assert "пароль" not in rendered


@pytest.mark.mysql
@pytest.mark.parametrize("conn_type", ["mysql", "jetbase"])
def test_wrong_non_ascii_mysql_password_is_an_auth_error_without_the_password(
    monkeypatch: pytest.MonkeyPatch, unicode_login: tuple[URL, str], conn_type: str
) -> None:
    url, _ = unicode_login
    make = _fields if conn_type == "mysql" else _jetbase_fields
    conn_id = define_connection(monkeypatch, make(url, WRONG_PASSWORD))
    hook = JetbaseHook(conn_id)
    with pytest.raises(Exception) as info:  # noqa: PT011 - the driver's own error class is the point
        _select_one(hook)
    assert "Access denied" in str(info.value), str(info.value)
    assert url.username is not None and url.username in str(info.value)
    _assert_no_password(info.value, WRONG_PASSWORD)

    ok, message = hook.test_connection()
    assert ok is False
    assert "Access denied" in message and conn_id in message, message
    for form in _password_forms(WRONG_PASSWORD):
        assert form not in message, (form, message)
