"""Open a Snowflake session with key-pair (JWT) auth; a refused key becomes our own clear error.

The private key is loaded here (our formats, our passphrase handling) and handed to
`snowflake.connector` as a key object, never as a path. The driver is imported only when a
connection is opened, so `pricing_lab` and `connectors` import without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.snowflake.config import KEY_PAIR_AUTHENTICATOR, SnowflakeCredentials
from connectors.snowflake.errors import (
    AuthenticationRefusedError,
    DriverMissingError,
    PassphraseMissingError,
    SnowflakeDriverError,
    SnowflakeUnavailableError,
)
from connectors.snowflake.keys import (
    LoadedPrivateKey,
    jwt_issuer,
    load_private_key,
    read_key_file,
    sql_identifier,
)

if TYPE_CHECKING:
    from snowflake.connector import SnowflakeConnection

logger = logging.getLogger(__name__)

# Login error codes Snowflake answers when it refuses the credentials themselves (from
# snowflake.connector.network.CREDENTIAL_REJECTION_GS_CODES): 390144 is "JWT token is invalid".
CREDENTIAL_REJECTION_CODES = frozenset(
    {"390100", "390144", "394300", "394301", "394302", "394303", "394304", "394305", "394306"}
)
PassphrasePrompt = Callable[[str], str | bytes]
# Keeps the driver from sending out-of-band telemetry: the session talks to its account only.
SESSION_PARAMETERS: Mapping[str, object] = {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False}
DEFAULT_TIMEOUT_SECONDS = 45


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """How long the driver may spend on one request before it counts as failed, in seconds.

    Without them the driver retries a query forever when Snowflake becomes unreachable and a
    login for two minutes. `login`: retries of the login request (driver `login_timeout`);
    `network`: retries of any other request, and also the longest one statement may run (the
    driver cancels it then: raise it for loads whose MERGE takes longer); `socket`: one HTTP
    read or connect (the driver advises at least 45 s: Snowflake answers a long query's request
    after about 45 s with "still running"). See docs/snowflake-export.md, "Bounded failure".
    """

    login: int = DEFAULT_TIMEOUT_SECONDS
    network: int = DEFAULT_TIMEOUT_SECONDS
    socket: int = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def all(cls, seconds: int) -> Timeouts:
        return cls(login=seconds, network=seconds, socket=seconds)

    def driver_options(self) -> dict[str, int]:
        return {
            "login_timeout": self.login,
            "network_timeout": self.network,
            "socket_timeout": self.socket,
        }


def load_configured_key(
    credentials: SnowflakeCredentials, *, prompt: PassphrasePrompt | None = None
) -> LoadedPrivateKey:
    """Load the credentials' private key; ask `prompt` for a passphrase if it is encrypted and
    none was configured (without a prompt that is a `PassphraseMissingError`)."""
    if credentials.private_key_file is not None:
        data = read_key_file(credentials.private_key_file)
    else:
        assert credentials.private_key is not None
        data = credentials.private_key.reveal_bytes()
    source = credentials.key_source
    secret = credentials.private_key_passphrase
    passphrase = secret.reveal_bytes() if secret is not None else None
    try:
        return load_private_key(data, passphrase=passphrase, source=source)
    except PassphraseMissingError:
        if prompt is None:
            raise
    return load_private_key(data, passphrase=prompt(f"Passphrase for {source}: "), source=source)


def _driver() -> Any:
    try:
        import snowflake.connector
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith("snowflake"):
            raise DriverMissingError(
                "the Snowflake driver is not installed: install pricing-lab with the "
                "'snowflake' extra (pip install 'pricing-lab[snowflake]')"
            ) from None
        raise
    return snowflake.connector


def connect_arguments(
    credentials: SnowflakeCredentials, key: LoadedPrivateKey
) -> dict[str, object]:
    """The keyword arguments `snowflake.connector.connect` gets (the key as an object)."""
    arguments: dict[str, object] = {
        "account": credentials.account,
        "user": credentials.user,
        "authenticator": KEY_PAIR_AUTHENTICATOR,
        "private_key": key.key,
    }
    for name in ("role", "warehouse", "database", "schema", "host", "port", "protocol"):
        value = getattr(credentials, name)
        if value is not None:
            arguments[name] = value
    return arguments


def _refused_message(
    credentials: SnowflakeCredentials, key: LoadedPrivateKey, issuer: str, detail: str
) -> str:
    user = sql_identifier(credentials.user)
    return (
        f"Snowflake refused the key-pair login of user {credentials.user} on account "
        f"{credentials.account}: {detail}\n"
        f"  configured key: {key.source} ({key.key_format}), public key fingerprint "
        f"{key.fingerprint}\n"
        f"  JWT issuer sent: {issuer}\n"
        f"Check that `DESC USER {user}` shows {key.fingerprint} as RSA_PUBLIC_KEY_FP or "
        f"RSA_PUBLIC_KEY_2_FP (register the public key with ALTER USER {user} SET "
        "RSA_PUBLIC_KEY='…' or RSA_PUBLIC_KEY_2='…'; `pricing-lab keys rotate` prints the steps), "
        "that the account and user are the ones the key was registered for, and that this "
        "machine's clock is right (the JWT is valid for 60 s)."
    )


def connect(
    credentials: SnowflakeCredentials,
    *,
    prompt: PassphrasePrompt | None = None,
    session_parameters: Mapping[str, object] | None = None,
    timeouts: Timeouts | None = None,
    **driver_options: Any,
) -> SnowflakeConnection:
    """Open a `snowflake.connector` connection with key-pair (SNOWFLAKE_JWT) authentication.

    `credentials.host/port/protocol` override the account's URL (e.g. a local test server).
    `timeouts` bound each request (default `Timeouts()`: 45 s each); `driver_options` go to
    `snowflake.connector.connect` as they are and win over `timeouts`.
    Raises `AuthenticationRefusedError` (with the key's fingerprint and what to check) when
    Snowflake refuses the JWT, `SnowflakeUnavailableError` when it cannot be reached, and the
    `KeyLoadError` family when the key cannot be loaded.
    """
    key = load_configured_key(credentials, prompt=prompt)
    connector = _driver()
    arguments = connect_arguments(credentials, key)
    if session_parameters is not None:
        arguments["session_parameters"] = dict(session_parameters)
    arguments.update((timeouts or Timeouts()).driver_options())
    arguments.update(driver_options)
    issuer = jwt_issuer(credentials.account, credentials.user, key.fingerprint)
    logger.debug("connecting to Snowflake as %s with key %s", issuer, key.source)
    try:
        return connector.connect(**arguments)
    except connector.errors.Error as exc:
        code = str(exc.errno) if getattr(exc, "errno", None) is not None else None
        detail = str(getattr(exc, "msg", "") or exc)
        if code in CREDENTIAL_REJECTION_CODES or getattr(exc, "sqlstate", None) == "28000":
            raise AuthenticationRefusedError(
                _refused_message(credentials, key, issuer, detail),
                fingerprint=key.fingerprint,
                jwt_issuer=issuer,
                server_code=code,
            ) from exc
        if isinstance(exc, connector.errors.OperationalError | connector.errors.InterfaceError):
            raise SnowflakeUnavailableError(
                f"Snowflake could not be reached as user {credentials.user} on account "
                f"{credentials.account}: {detail}"
            ) from exc
        raise SnowflakeDriverError(f"Snowflake connection failed: {detail}") from exc
