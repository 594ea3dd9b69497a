"""The real snowflake-connector-python logs in with a JWT through the gateway, or is refused."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from connectors.snowflake.auth import connect
from connectors.snowflake.config import SnowflakeCredentials, resolve_credentials
from connectors.snowflake.errors import AuthenticationRefusedError, WrongPassphraseError
from tests.connectors.snowflake.conftest import (
    PASSPHRASE,
    TEST_ACCOUNT,
    TEST_SESSION_PARAMETERS,
    TEST_USER,
    KeyFiles,
    SnowflakeCredentialsFactory,
)
from tests.connectors.snowflake.gateway import LoginGateway
from tests.connectors.snowflake.openssl_tools import openssl_fingerprint


def _select(credentials: SnowflakeCredentials, sql: str) -> list[tuple[object, ...]]:
    with connect(credentials, session_parameters=TEST_SESSION_PARAMETERS) as conn:
        return list(conn.cursor().execute(sql).fetchall())


def test_right_key_connects_and_runs_sql(
    registered_snowflake_credentials: SnowflakeCredentials, snowflake_server: LoginGateway
) -> None:
    table = f"auth_check_{uuid.uuid4().hex[:8]}"
    with connect(
        registered_snowflake_credentials, session_parameters=TEST_SESSION_PARAMETERS
    ) as conn:
        cursor = conn.cursor()
        assert cursor.execute("select 1").fetchall() == [(1,)]
        cursor.execute(f"create table {table} (plan_id varchar, credits number(38, 2))")
        cursor.execute(f"insert into {table} values ('starter', 100.50), ('pro', 1200.00)")
        rows = cursor.execute(f"select plan_id, credits from {table} order by plan_id").fetchall()
    assert [(plan, str(credits)) for plan, credits in rows] == [
        ("pro", "1200.00"),
        ("starter", "100.50"),
    ]
    assert snowflake_server.attempts[-1].accepted and snowflake_server.attempts[-1].slot == 1


def test_wrong_key_is_refused_and_the_error_shows_its_fingerprint(
    snowflake_server: LoginGateway,
    snowflake_credentials: SnowflakeCredentialsFactory,
    rsa_keys: dict[str, KeyFiles],
    assert_no_key_material: Callable[[str], None],
) -> None:
    snowflake_server.register_public_key(TEST_USER, 1, rsa_keys["a"].public_pem)
    wrong = snowflake_credentials(rsa_keys["c"].path("pkcs8_encrypted.pem"), passphrase=PASSPHRASE)
    with pytest.raises(AuthenticationRefusedError) as caught:
        connect(wrong, session_parameters=TEST_SESSION_PARAMETERS)
    message = str(caught.value)
    fingerprint_c = openssl_fingerprint(rsa_keys["c"].public_pem)
    assert caught.value.fingerprint == fingerprint_c
    assert fingerprint_c in message
    assert openssl_fingerprint(rsa_keys["a"].public_pem) not in message
    assert "JWT token is invalid" in message
    assert "RSA_PUBLIC_KEY_FP or RSA_PUBLIC_KEY_2_FP" in message
    assert f"ACME-TEST.PRICING_LAB_LOADER.{fingerprint_c}" in message
    assert caught.value.exit_code == 2
    assert_no_key_material(message)
    assert not snowflake_server.attempts[-1].accepted


def test_user_without_registered_key_is_refused(
    snowflake_server: LoginGateway,
    snowflake_credentials: SnowflakeCredentialsFactory,
    rsa_keys: dict[str, KeyFiles],
) -> None:
    creds = snowflake_credentials(rsa_keys["a"].path("pkcs8.pem"), user="nobody")
    with pytest.raises(AuthenticationRefusedError):
        connect(creds, session_parameters=TEST_SESSION_PARAMETERS)
    assert snowflake_server.attempts[-1].reason == "no public key registered for the user"


def test_rotation_register_second_key_switch_then_unset_old(
    snowflake_server: LoginGateway,
    snowflake_credentials: SnowflakeCredentialsFactory,
    rsa_keys: dict[str, KeyFiles],
) -> None:
    old = snowflake_credentials(rsa_keys["a"].path("pkcs1.pem"))
    new = snowflake_credentials(rsa_keys["b"].path("pkcs8_encrypted.der"), passphrase=PASSPHRASE)
    snowflake_server.register_public_key(TEST_USER, 1, rsa_keys["a"].public_pem)
    assert _select(old, "select 'old'") == [("old",)]

    # 1. ALTER USER … SET RSA_PUBLIC_KEY_2: both keys work while clients switch
    snowflake_server.register_public_key(TEST_USER, 2, rsa_keys["b"].public_pem)
    assert _select(new, "select 'new'") == [("new",)]
    assert snowflake_server.attempts[-1].slot == 2
    assert _select(old, "select 'old'") == [("old",)]

    # 2. ALTER USER … UNSET RSA_PUBLIC_KEY: the old key is refused, the new one still works
    snowflake_server.unset_public_key(TEST_USER, 1)
    with pytest.raises(AuthenticationRefusedError) as caught:
        _select(old, "select 1")
    assert openssl_fingerprint(rsa_keys["a"].public_pem) in str(caught.value)
    assert _select(new, "select 'new'") == [("new",)]


def test_key_and_server_from_environment_variables(
    snowflake_server: LoginGateway, rsa_keys: dict[str, KeyFiles], tmp_path: object
) -> None:
    key = rsa_keys["b"]
    snowflake_server.register_public_key("env_user", 1, key.public_pem)
    env = {
        "SNOWFLAKE_HOME": "/nonexistent-snowflake-home",
        "SNOWFLAKE_ACCOUNT": TEST_ACCOUNT,
        "SNOWFLAKE_USER": "env_user",
        "SNOWFLAKE_PRIVATE_KEY": key.path("pkcs8_encrypted.pem").read_text(),
        "SNOWFLAKE_PRIVATE_KEY_FILE_PWD": PASSPHRASE,
        "SNOWFLAKE_HOST": snowflake_server.host,
        "SNOWFLAKE_PORT": str(snowflake_server.port),
        "SNOWFLAKE_PROTOCOL": "http",
        "SNOWFLAKE_DATABASE": "ENVDB",
        "SNOWFLAKE_SCHEMA": "ENVSCHEMA",
    }
    creds = resolve_credentials(environ=env)
    assert _select(creds, "select current_database()") == [("ENVDB",)]


def test_wrong_passphrase_fails_before_any_login(
    snowflake_server: LoginGateway,
    snowflake_credentials: SnowflakeCredentialsFactory,
    rsa_keys: dict[str, KeyFiles],
) -> None:
    creds = snowflake_credentials(rsa_keys["a"].path("pkcs8_encrypted.pem"), passphrase="nope")
    with pytest.raises(WrongPassphraseError):
        connect(creds, session_parameters=TEST_SESSION_PARAMETERS)
    assert snowflake_server.attempts == []


def _login(gateway: LoginGateway, user: str, token: str) -> dict[str, object]:
    body = {
        "data": {
            "ACCOUNT_NAME": TEST_ACCOUNT,
            "LOGIN_NAME": user,
            "AUTHENTICATOR": "SNOWFLAKE_JWT",
            "TOKEN": token,
            "SESSION_PARAMETERS": {},
        }
    }
    response = httpx.post(f"{gateway.url}/session/v1/login-request", json=body, timeout=10)
    assert response.status_code == 200
    result: dict[str, object] = response.json()
    return result


@pytest.mark.parametrize(
    ("issuer_account", "subject_user", "accepted"),
    [
        ("ACME-TEST", "PRICING_LAB_LOADER", True),
        ("OTHER", "PRICING_LAB_LOADER", False),  # issuer for another account
        ("ACME-TEST", "SOMEONE_ELSE", False),  # subject for another user
    ],
)
def test_gateway_checks_issuer_and_subject(
    snowflake_server: LoginGateway,
    rsa_keys: dict[str, KeyFiles],
    issuer_account: str,
    subject_user: str,
    accepted: bool,
) -> None:
    key = rsa_keys["a"]
    snowflake_server.register_public_key(TEST_USER, 1, key.public_pem)
    private = serialization.load_pem_private_key(key.path("pkcs8.pem").read_bytes(), None)
    fingerprint = openssl_fingerprint(key.public_pem)
    now = int(time.time())
    claims = {
        "iss": f"{issuer_account}.PRICING_LAB_LOADER.{fingerprint}",
        "sub": f"ACME-TEST.{subject_user}",
        "iat": now,
        "exp": now + 60,
    }
    token = jwt.encode(claims, private, algorithm="RS256")  # type: ignore[arg-type]
    result = _login(snowflake_server, TEST_USER, token)
    assert result["success"] is accepted
    if not accepted:
        assert result["code"] == "390144"
        assert result["data"] is None
        assert str(result["message"]).startswith("JWT token is invalid. [")
