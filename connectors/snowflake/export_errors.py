"""Errors of the Snowflake export and the rule that sorts driver errors into transient / terminal.

Transient errors (connection reset, HTTP 5xx, timeouts, lock contention) are retried with
exponential backoff; terminal ones (authentication, permissions, missing objects, a column type
change) stop the export with a message saying what to fix. Exit statuses for schedulers:
0 success, 1 export failed, 2 bad input or configuration, 3 another export holds the lock.
"""

from __future__ import annotations

from typing import Literal

from pricing_lab.errors import InputError, PricingLabError

Classification = Literal["transient", "terminal"]

# Driver error numbers (snowflake.connector.errorcode and Snowflake server codes).
_TRANSIENT_ERRNOS = frozenset(
    {
        250001,  # failed to connect
        250002,  # connection is closed
        250003,  # failed to request (network)
        250005,  # failed to reach the server
        251011,  # connection timeout
        251012,  # retryable response code
        253003,  # failed to upload to stage
        253009,  # failed to check existing files on the stage
        390112,  # session no longer exists: log in again
        390114,  # authentication token expired: log in again
        625,  # statement aborted: too many waiters for a table lock
        604,  # statement cancelled (e.g. warehouse resumed / maintenance)
        630,  # statement reached its lock wait timeout
    }
)
_HTTP_BASE = 290000  # the driver's ER_HTTP_GENERAL_ERROR + status code
_TERMINAL_HINTS: dict[int, str] = {
    3001: "the role lacks a privilege: GRANT it USAGE on the database and schema, CREATE TABLE "
    "and CREATE STAGE on the schema, and INSERT/UPDATE/SELECT on the export tables",
    2003: "an object does not exist or the role is not authorised to use it: check the "
    "connection's database, schema and role",
    390100: "the login was refused: check the user and its registered public key",
    390144: "the JWT was refused: check the key pair (`pricing-lab keys doctor`)",
}


class ExportError(PricingLabError):
    """The export failed; the CLI exits with status 1. Safe to run again: it resumes."""

    exit_code = 1


class ExportTerminalError(InputError):
    """The export cannot succeed until something is fixed (configuration, grants, schema).

    The CLI exits with status 2; the message says what to fix.
    """


class SchemaConflictError(ExportTerminalError):
    """A target table has a column whose type differs from the export's: never altered in place."""


class ExportLockedError(ExportError):
    """Another export holds the target schema's export lock; the CLI exits with status 3."""

    exit_code = 3

    def __init__(self, message: str, *, holder: str, expires_at: str) -> None:
        self.holder = holder
        self.expires_at = expires_at
        super().__init__(message)


class LockLostError(ExportError):
    """The export's lease on the lock expired and another export took it over."""


class InjectedFault(ExportError):
    """Raised by the fault-injection hook so tests can stop an export after any step."""


class RetriesExhaustedError(ExportError):
    """A transient error kept happening after every retry."""


def driver_errno(exc: BaseException) -> int | None:
    """The driver's error number of a `snowflake.connector` error, if it has one."""
    errno = getattr(exc, "errno", None)
    try:
        return int(errno) if errno is not None else None
    except (TypeError, ValueError):
        return None


def classify(exc: BaseException) -> Classification:
    """Whether retrying `exc` may help: `transient` (network, 5xx, lock contention) or `terminal`.

    Our own errors carry their nature; driver errors are sorted by class and error number;
    OS-level connection errors are transient. Anything unknown is terminal (never retried
    blindly).
    """
    if isinstance(exc, ExportError | ExportTerminalError | InputError):
        return "terminal"
    own = getattr(exc, "transient", None)
    if isinstance(own, bool) and isinstance(exc, PricingLabError):
        return "transient" if own else "terminal"
    if isinstance(exc, ConnectionError | TimeoutError):
        return "transient"
    try:
        from snowflake.connector import errors as sf_errors
    except ModuleNotFoundError:  # pragma: no cover - the driver is an optional extra
        return "terminal"
    if not isinstance(exc, sf_errors.Error):
        return "terminal"
    errno = driver_errno(exc)
    if errno is not None:
        if errno in _TRANSIENT_ERRNOS:
            return "transient"
        if _HTTP_BASE + 500 <= errno < _HTTP_BASE + 600 or errno in {
            _HTTP_BASE + 408,
            _HTTP_BASE + 429,
        }:
            return "transient"
    if isinstance(exc, sf_errors.ProgrammingError | sf_errors.IntegrityError | sf_errors.DataError):
        return "terminal"
    if isinstance(exc, sf_errors.ForbiddenError | sf_errors.BadRequest):
        return "terminal"
    retryable = (
        sf_errors.OperationalError,
        sf_errors.InternalServerError,
        sf_errors.ServiceUnavailableError,
        sf_errors.GatewayTimeoutError,
        sf_errors.BadGatewayError,
        sf_errors.RequestTimeoutError,
        sf_errors.TooManyRequests,
        sf_errors.OtherHTTPRetryableError,
        sf_errors.RequestExceedMaxRetryError,
    )
    return "transient" if isinstance(exc, retryable) else "terminal"


def terminal_message(exc: BaseException, *, during: str) -> str:
    """A message for a terminal driver error: what failed, the driver's words, what to fix."""
    errno = driver_errno(exc)
    detail = str(getattr(exc, "msg", "") or exc).strip()
    hint = _TERMINAL_HINTS.get(errno or -1)
    if hint is None and errno is not None and 390000 <= errno < 395000:
        hint = "authentication failed: check the key pair with `pricing-lab keys doctor`"
    code = f" [{errno}]" if errno is not None else ""
    text = f"Snowflake export failed while {during}{code}: {detail}"
    return f"{text}\n  fix: {hint}" if hint else text
