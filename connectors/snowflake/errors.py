"""Errors of the Snowflake connector, classified terminal (fix the configuration) or transient.

Every message here is written for the person who configured the connection: it says what is wrong,
where the value came from and what to check. No message ever contains a private key, a passphrase
or any other key material: only paths, sources, formats and public-key fingerprints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pricing_lab.errors import InputError, PricingLabError, Problem, ValidationError


class SnowflakeConfigError(InputError):
    """The Snowflake configuration is wrong or incomplete: terminal, the CLI exits with status 2."""

    transient = False


class MissingSettingsError(SnowflakeConfigError):
    """Required settings (account, user, private key) found nowhere; says where each was sought."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: Sequence[Problem] = tuple(problems)
        lines = ["Snowflake connection settings are missing:"]
        lines += [f"  {problem}" for problem in self.problems]
        super().__init__("\n".join(lines))


class InvalidSettingsError(ValidationError, SnowflakeConfigError):
    """Settings that were found but cannot be used (bad port, unknown protocol, ...), all listed."""


class ConnectionNotFoundError(SnowflakeConfigError):
    """A connection name was asked for but `connections.toml` has no such connection."""


class KeyLoadError(SnowflakeConfigError):
    """A private or public key could not be loaded. `reason` names the failure for programs.

    The message names the key's source (a path or an environment variable, never its content),
    the failure, and the formats that were tried.
    """

    reason = "unreadable_key"

    def __init__(self, message: str, *, source: str, formats_tried: Sequence[str] = ()) -> None:
        self.source = source
        self.formats_tried = tuple(formats_tried)
        tried = f" Formats tried: {', '.join(self.formats_tried)}." if self.formats_tried else ""
        super().__init__(f"{source}: {message}.{tried}")


class KeyFileError(KeyLoadError):
    """The key file does not exist, is a directory, or cannot be read."""

    reason = "key_file_unreadable"


class WrongPassphraseError(KeyLoadError):
    """The key is encrypted and the passphrase given does not decrypt it."""

    reason = "wrong_passphrase"


class PassphraseMissingError(KeyLoadError):
    """The key is encrypted and no passphrase was configured (and none could be prompted for)."""

    reason = "passphrase_missing"


class PublicKeyGivenError(KeyLoadError):
    """A public key (or certificate) was given where a private key is needed."""

    reason = "public_key_given"


class BadBase64Error(KeyLoadError):
    """The value is neither PEM nor DER, and not valid base64 of either."""

    reason = "bad_base64"


class UnsupportedKeyTypeError(KeyLoadError):
    """The key loads but is not RSA (EC, Ed25519, DSA ...), or is in a format we do not read."""

    reason = "unsupported_key_type"


class DriverMissingError(SnowflakeConfigError):
    """`snowflake-connector-python` is not installed (install the `snowflake` extra)."""


class AuthenticationRefusedError(SnowflakeConfigError):
    """Snowflake refused the key-pair login (JWT). Carries the configured key's fingerprint."""

    def __init__(
        self, message: str, *, fingerprint: str, jwt_issuer: str, server_code: str | None
    ) -> None:
        self.fingerprint = fingerprint
        self.jwt_issuer = jwt_issuer
        self.server_code = server_code
        super().__init__(message)


class SnowflakeUnavailableError(PricingLabError):
    """Snowflake could not be reached or failed for a reason worth retrying (network, timeout)."""

    transient = True


class SnowflakeDriverError(PricingLabError):
    """The Snowflake driver failed for another reason; the driver's message is kept."""

    transient = False
