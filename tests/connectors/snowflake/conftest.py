"""Fixtures for Snowflake tests: RSA keys in every format, the JWT login gateway, credentials.

Reusable by any Snowflake test (auth, export):

- `snowflake_server`: the login gateway in front of fakesnow (started once per session), with
  `host`, `port`, `register_public_key(user, slot, pem)`, `unset_public_key(user, slot)` and
  `attempts`; registrations are cleared after each test.
- `snowflake_credentials(private_key_path, *, user=..., passphrase=...)`: credentials pointing
  at the gateway over HTTP.
- `registered_snowflake_credentials`: key "a" registered for `TEST_USER` in slot 1 and matching
  credentials (encrypted PKCS#8 file + passphrase): `connect(creds,
  session_parameters=TEST_SESSION_PARAMETERS)` just works.
- `rsa_keys`: three RSA 2048 keys ("a", "b", "c"), each written in every format.

Every test here also checks that no captured log line holds key material (the PEM/DER bodies or
the passphrase): see `_no_key_material_in_logs`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.snowflake.config import SnowflakeCredentials
from tests.connectors.snowflake.gateway import LoginGateway

PASSPHRASE = "correct horse battery staple 7"
TEST_ACCOUNT = "acme-test"
TEST_USER = "pricing_lab_loader"
TEST_DATABASE = "PRICING_LAB"
TEST_SCHEMA = "PUBLIC"
# Keeps the driver from sending telemetry anywhere but the test server.
TEST_SESSION_PARAMETERS = {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False}
KEY_NAMES = ("a", "b", "c")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyFiles:
    """One RSA key written in every format, plus the strings that must never leak."""

    name: str
    folder: Path
    public_pem: str
    secrets: tuple[str, ...]

    def path(self, fmt: str) -> Path:
        """`fmt` is one of pkcs8.pem, pkcs8_encrypted.pem, pkcs1.pem, pkcs8.der,
        pkcs8_encrypted.der, pkcs1.der, public.pem."""
        return self.folder / fmt


def _write_key(folder: Path, name: str) -> KeyFiles:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder.mkdir(parents=True)
    pkcs8, traditional = (
        serialization.PrivateFormat.PKCS8,
        serialization.PrivateFormat.TraditionalOpenSSL,
    )
    pem, der = serialization.Encoding.PEM, serialization.Encoding.DER
    plain = serialization.NoEncryption()
    encrypted = serialization.BestAvailableEncryption(PASSPHRASE.encode())
    files = {
        "pkcs8.pem": key.private_bytes(pem, pkcs8, plain),
        "pkcs8_encrypted.pem": key.private_bytes(pem, pkcs8, encrypted),
        "pkcs1.pem": key.private_bytes(pem, traditional, plain),
        "pkcs8.der": key.private_bytes(der, pkcs8, plain),
        "pkcs8_encrypted.der": key.private_bytes(der, pkcs8, encrypted),
        "pkcs1.der": key.private_bytes(der, traditional, plain),
    }
    public_pem = (
        key.public_key()
        .public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
        (folder / file_name).chmod(0o600)
    (folder / "public.pem").write_text(public_pem)
    # Strings that must never appear: the passphrase, and pieces of each private encoding taken
    # past the public modulus (so the public key, which may be printed, never matches).
    secrets: list[str] = [PASSPHRASE]
    for file_name, data in files.items():
        if file_name.endswith(".pem"):
            body = [line for line in data.decode().splitlines() if len(line) == 64]
            secrets += body if "encrypted" in file_name else body[6:]
        else:
            secrets.append(base64.b64encode(data).decode()[400:464])
    return KeyFiles(name=name, folder=folder, public_pem=public_pem, secrets=tuple(secrets))


@pytest.fixture(scope="session")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyFiles]:
    base = tmp_path_factory.mktemp("rsa_keys")
    return {name: _write_key(base / name, name) for name in KEY_NAMES}


@pytest.fixture(scope="session")
def key_secrets(rsa_keys: dict[str, KeyFiles]) -> tuple[str, ...]:
    return tuple(secret for key in rsa_keys.values() for secret in key.secrets)


@pytest.fixture()
def assert_no_key_material(key_secrets: tuple[str, ...]) -> Callable[[str], None]:
    """Asserts a text (a message, an output) holds no private key body and no passphrase."""

    def check(text: str) -> None:
        leaked = [secret for secret in key_secrets if secret in text]
        assert not leaked, f"key material found in text ({len(leaked)} matches)"

    return check


@pytest.fixture(autouse=True)
def _no_key_material_in_logs(
    caplog: pytest.LogCaptureFixture, key_secrets: tuple[str, ...]
) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    for name in ("snowflake.connector", "connectors", "fakesnow", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    # In teardown `caplog.records` holds the teardown's records only: ask for each phase.
    records = caplog.get_records("setup") + caplog.get_records("call")
    texts = [record.getMessage() for record in records]
    texts += [str(record.args) for record in records] + [caplog.text]
    leaked = [secret for secret in key_secrets for text in texts if secret in text]
    assert not leaked, f"key material found in captured logs ({len(leaked)} matches)"


@pytest.fixture(scope="session")
def _login_gateway() -> Iterator[LoginGateway]:
    gateway = LoginGateway().start()
    with seq8_in_scan_order():
        yield gateway
    gateway.stop()


@contextmanager
def seq8_in_scan_order() -> Iterator[None]:
    """The stand-in's SEQ8 numbering rows in the order the scan makes them, as Snowflake's does.

    fakesnow runs sqlglot's translation, a row number ordered on a constant, which DuckDB's
    unstable sort numbers in no particular order; DuckDB numbers an empty window in scan order
    (the warehouse costing numbers the source's rows with SEQ8, `connectors.snowflake.
    costing_sql`)."""
    from sqlglot import exp, generator
    from sqlglot.dialects.duckdb import DuckDB

    # sqlglot builds each generator class's dispatch table from TRANSFORMS on first use and keeps
    # it (`generator._DISPATCH_CACHE`): another test that ran fakesnow earlier in this process
    # (tests/formula) has built it already, so it is dropped here and again on the way out.
    transforms = DuckDB.Generator.TRANSFORMS
    before = transforms.get(exp.Seq8)
    transforms[exp.Seq8] = lambda _generator, _node: "(ROW_NUMBER() OVER () - 1)"
    generator._DISPATCH_CACHE.clear()
    try:
        yield
    finally:
        if before is None:
            del transforms[exp.Seq8]
        else:
            transforms[exp.Seq8] = before
        generator._DISPATCH_CACHE.clear()


@pytest.fixture()
def snowflake_server(_login_gateway: LoginGateway) -> Iterator[LoginGateway]:
    """The JWT-checking login gateway in front of fakesnow; key registrations reset after."""
    yield _login_gateway
    _login_gateway.registry.clear()


SnowflakeCredentialsFactory = Callable[..., SnowflakeCredentials]


@pytest.fixture()
def snowflake_credentials(snowflake_server: LoginGateway) -> SnowflakeCredentialsFactory:
    """A factory of credentials that reach the gateway over HTTP with a given private key."""

    def make(
        private_key_path: str | Path,
        *,
        user: str = TEST_USER,
        passphrase: str | None = None,
        account: str = TEST_ACCOUNT,
        database: str | None = TEST_DATABASE,
        schema: str | None = TEST_SCHEMA,
    ) -> SnowflakeCredentials:
        return SnowflakeCredentials(
            account=account,
            user=user,
            private_key_file=Path(private_key_path),
            private_key_passphrase=passphrase,
            database=database,
            schema=schema,
            host=snowflake_server.host,
            port=snowflake_server.port,
            protocol="http",
        )

    return make


@pytest.fixture()
def registered_snowflake_credentials(
    snowflake_server: LoginGateway,
    snowflake_credentials: SnowflakeCredentialsFactory,
    rsa_keys: dict[str, KeyFiles],
) -> SnowflakeCredentials:
    """Key "a" registered for TEST_USER (slot 1); credentials with its encrypted PKCS#8 file."""
    key = rsa_keys["a"]
    snowflake_server.register_public_key(TEST_USER, 1, key.public_pem)
    return snowflake_credentials(key.path("pkcs8_encrypted.pem"), passphrase=PASSPHRASE)
