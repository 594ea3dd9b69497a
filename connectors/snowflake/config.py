"""Snowflake connection settings: explicit arguments, then environment, then `connections.toml`.

Each setting is resolved on its own, from the first place that has it:

1. an explicit argument (Python keyword or CLI option),
2. an environment variable (`SNOWFLAKE_ACCOUNT`, `SNOWFLAKE_USER`, ... see `ENV_VARS`),
3. Snowflake's standard `connections.toml` in `$SNOWFLAKE_HOME` (default `~/.snowflake`), in the
   connection named by the argument, `SNOWFLAKE_DEFAULT_CONNECTION_NAME`, `default_connection_name`
   in `config.toml`, or `default`.

The private key is one setting with two shapes: a file (`private_key_file`) or the key itself
(`private_key`: PEM, or base64 of PEM/DER); one place giving both is an error. Secrets are held in
`Secret`, whose `repr` and `str` never show the value.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.snowflake.errors import (
    ConnectionNotFoundError,
    InvalidSettingsError,
    MissingSettingsError,
    SnowflakeConfigError,
)
from pricing_lab.errors import Problem

ENV_VARS: Mapping[str, str] = {
    "account": "SNOWFLAKE_ACCOUNT",
    "user": "SNOWFLAKE_USER",
    "private_key_file": "SNOWFLAKE_PRIVATE_KEY_FILE",
    "private_key": "SNOWFLAKE_PRIVATE_KEY",
    "private_key_file_pwd": "SNOWFLAKE_PRIVATE_KEY_FILE_PWD",
    "role": "SNOWFLAKE_ROLE",
    "warehouse": "SNOWFLAKE_WAREHOUSE",
    "database": "SNOWFLAKE_DATABASE",
    "schema": "SNOWFLAKE_SCHEMA",
    "host": "SNOWFLAKE_HOST",
    "port": "SNOWFLAKE_PORT",
    "protocol": "SNOWFLAKE_PROTOCOL",
}
SETTING_NAMES = (
    "account",
    "user",
    "private_key",
    "private_key_file_pwd",
    "authenticator",
    "role",
    "warehouse",
    "database",
    "schema",
    "host",
    "port",
    "protocol",
)
# Keys read from a connection table of connections.toml (the names the connector uses).
TOML_KEYS = frozenset({*SETTING_NAMES, "private_key_file"})
REQUIRED_SETTINGS = ("account", "user", "private_key")
SECRET_SETTINGS = frozenset({"private_key_file_pwd"})
KEY_PAIR_AUTHENTICATOR = "SNOWFLAKE_JWT"
CONNECTION_NAME_ENV = "SNOWFLAKE_DEFAULT_CONNECTION_NAME"
HOME_ENV = "SNOWFLAKE_HOME"
_ACCOUNT_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


class Secret:
    """A secret value (passphrase, inline private key): shown as `******` in `repr` and `str`."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        self._value = value

    def reveal(self) -> str | bytes:
        """The secret itself: pass it to what needs it, never to a log or a message."""
        return self._value

    def reveal_bytes(self) -> bytes:
        value = self._value
        return value.encode("utf-8") if isinstance(value, str) else value

    def __repr__(self) -> str:
        return "Secret('******')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.reveal_bytes() == other.reveal_bytes()

    def __hash__(self) -> int:
        return hash(self.reveal_bytes())

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyReference:
    """Where the private key is: a file path, or the key text itself (a `Secret`)."""

    file: Path | None = None
    inline: Secret | None = None

    def describe(self, source: str) -> str:
        """How error messages name this key: the file path, or the place holding the text."""
        return f"key file {self.file}" if self.file is not None else f"private key from {source}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedSetting:
    """One setting: its value (None when found nowhere), where it came from, where we looked."""

    name: str
    value: str | Secret | KeyReference | None
    source: str | None
    looked_in: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedSettings:
    """Every setting with its origin, plus what went wrong while reading the sources."""

    settings: Mapping[str, ResolvedSetting]
    connection_name: str
    connection_name_source: str
    connections_file: Path
    connection_found: bool
    connection_error: str | None
    unknown_toml_keys: tuple[str, ...]
    problems: tuple[Problem, ...]

    def value(self, name: str) -> str | Secret | KeyReference | None:
        return self.settings[name].value

    def source(self, name: str) -> str | None:
        return self.settings[name].source

    def text(self, name: str) -> str | None:
        """The setting's value when it is plain text (not a secret or a key reference)."""
        value = self.value(name)
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class SnowflakeCredentials:
    """Everything needed to open a key-pair (JWT) session; `repr` shows no secret.

    Exactly one of `private_key_file` and `private_key` (PEM, DER or base64 text) is set.
    `sources` says, per setting, where its value came from (for messages and `keys doctor`).
    """

    account: str
    user: str
    private_key_file: Path | None = None
    private_key: Secret | None = None
    private_key_passphrase: Secret | None = None
    role: str | None = None
    warehouse: str | None = None
    database: str | None = None
    schema: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    connection_name: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("private_key", "private_key_passphrase"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Secret):
                object.__setattr__(self, name, Secret(value))
        if self.private_key_file is not None and not isinstance(self.private_key_file, Path):
            object.__setattr__(self, "private_key_file", Path(self.private_key_file))
        if (self.private_key_file is None) == (self.private_key is None):
            raise SnowflakeConfigError(
                "Snowflake credentials need exactly one of private_key_file and private_key"
            )

    @property
    def key_source(self) -> str:
        """How messages name the key: `key file PATH` or the place that held the key text."""
        if self.private_key_file is not None:
            return f"key file {self.private_key_file}"
        return f"private key from {self.sources.get('private_key', 'an explicit argument')}"


def snowflake_home(environ: Mapping[str, str] | None = None) -> Path:
    """The Snowflake configuration folder: `$SNOWFLAKE_HOME`, else `~/.snowflake`."""
    env = os.environ if environ is None else environ
    return Path(env.get(HOME_ENV) or "~/.snowflake").expanduser()


_TOML_FIX = (
    'fix the file (one [name] table of settings per connection, e.g. account = "myorg-acct") '
    f"or point {HOME_ENV} to another folder"
)


def _read_toml(path: Path) -> tuple[dict[str, Any] | None, Problem | None]:
    """The parsed file (None when absent or unusable) and, for a file that exists but cannot be
    used, a problem naming the file, the place in it and the fix."""
    if not path.exists():
        return None, None
    if path.is_dir():
        return None, Problem(path=str(path), message=f"is a folder, not a file; {_TOML_FIX}")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle), None
    except tomllib.TOMLDecodeError as exc:
        # The parser's message ends with the place: "(at line 3, column 7)".
        return None, Problem(path=str(path), message=f"is not valid TOML: {exc}; {_TOML_FIX}")
    except UnicodeDecodeError as exc:
        line = bytes(exc.object[: exc.start]).count(b"\n") + 1
        return None, Problem(
            path=str(path), message=f"is not UTF-8 text (at line {line}); {_TOML_FIX}"
        )
    except OSError as exc:
        return None, Problem(path=str(path), message=f"cannot be read ({exc.strerror})")


def _connection_name(
    explicit: str | None,
    env: Mapping[str, str],
    config_file: Path,
    config: tuple[dict[str, Any] | None, Problem | None],
    problems: list[Problem],
) -> tuple[str, str, bool]:
    """The connection name, where it came from, and whether it was asked for explicitly.

    `config` is `_read_toml(config_file)`; its problem is reported only when it is consulted."""
    if explicit:
        return explicit, "explicit argument", True
    if env.get(CONNECTION_NAME_ENV):
        return env[CONNECTION_NAME_ENV], f"environment variable {CONNECTION_NAME_ENV}", True
    document, problem = config
    if problem:
        problems.append(problem)
    name = (document or {}).get("default_connection_name")
    if isinstance(name, str) and name:
        return name, f"default_connection_name in {config_file}", True
    return "default", "built-in default", False


def _toml_connection(
    name: str,
    named_explicitly: bool,
    path: Path,
    document: dict[str, Any] | None,
    config: dict[str, Any] | None,
    *,
    unusable: bool,
) -> tuple[dict[str, Any], bool, str | None]:
    """The connection's table, whether it exists, and an error when a named one is missing.

    `document` is connections.toml at `path` and `config` is config.toml (None when absent).
    `unusable`: the file exists but cannot be read; that problem is reported on its own, so a
    named connection is not also said to be missing."""
    tables: dict[str, Any] = dict(document or {})
    # config.toml may also hold [connections.NAME] tables; connections.toml wins.
    nested = (config or {}).get("connections")
    if isinstance(nested, dict):
        tables = {**nested, **tables}
    table = tables.get(name)
    if isinstance(table, dict):
        return table, True, None
    if name in tables:
        return (
            {},
            False,
            f"connection '{name}' in {path} is not a table of settings (write it as [{name}] "
            "followed by key = value lines)",
        )
    if named_explicitly and not unusable:
        known = sorted(k for k, v in tables.items() if isinstance(v, dict))
        where = f"{path}" if document is not None else f"{path} (file not found)"
        return (
            {},
            False,
            f"connection '{name}' is not in {where}; known connections: "
            + (", ".join(known) if known else "none"),
        )
    return {}, False, None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, Path):
        return str(value)
    text = str(value).strip()
    return text or None


def resolve_settings(
    arguments: Mapping[str, object] | None = None,
    *,
    connection_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedSettings:
    """Resolve every setting from arguments > environment > connections.toml, without raising.

    `arguments` uses the setting names (`account`, `user`, `private_key_file`, `private_key`,
    `private_key_file_pwd`, `role`, ...); None values count as not given. Problems (a bad TOML
    file, two key sources in one place) are collected in `problems`, a missing named connection in
    `connection_error`; `resolve_credentials` turns them into errors, `keys doctor` reports them.
    """
    args = {k: v for k, v in (arguments or {}).items() if _text(v) is not None}
    env = os.environ if environ is None else environ
    home = snowflake_home(env)
    problems: list[Problem] = []
    config_file, toml_file = home / "config.toml", home / "connections.toml"
    config = _read_toml(config_file)
    name, name_source, named_explicitly = _connection_name(
        connection_name, env, config_file, config, problems
    )
    document, toml_problem = _read_toml(toml_file)
    if toml_problem:
        problems.append(toml_problem)
    table, found, connection_error = _toml_connection(
        name, named_explicitly, toml_file, document, config[0], unusable=toml_problem is not None
    )
    toml_place = f"{toml_file} [{name}]"
    if toml_problem is not None:
        toml_place += " (file unusable, see above)"
    elif document is None:
        toml_place += " (file not found)"
    elif not found:
        toml_place += " (no such connection)"
    unknown = tuple(sorted(k for k in table if k not in TOML_KEYS))

    settings: dict[str, ResolvedSetting] = {}
    for setting in SETTING_NAMES:
        if setting == "private_key":
            settings[setting] = _resolve_key(args, env, table, toml_place, problems)
            continue
        places: list[tuple[str, object]] = [(f"explicit argument '{setting}'", args.get(setting))]
        if setting in ENV_VARS:
            places.append((f"environment variable {ENV_VARS[setting]}", env.get(ENV_VARS[setting])))
        places.append((f"{toml_place} key '{setting}'", table.get(setting)))
        value: str | Secret | None = None
        source: str | None = None
        for place, raw in places:
            text = _text(raw)
            if text is not None:
                if setting in SECRET_SETTINGS:
                    value = Secret(raw if isinstance(raw, str | bytes) else str(raw))
                else:
                    value = text
                source = place
                break
        settings[setting] = ResolvedSetting(
            name=setting, value=value, source=source, looked_in=tuple(p for p, _ in places)
        )
    return ResolvedSettings(
        settings=settings,
        connection_name=name,
        connection_name_source=name_source,
        connections_file=toml_file,
        connection_found=found,
        connection_error=connection_error,
        unknown_toml_keys=unknown,
        problems=tuple(problems),
    )


def _resolve_key(
    args: Mapping[str, object],
    env: Mapping[str, str],
    table: Mapping[str, Any],
    toml_place: str,
    problems: list[Problem],
) -> ResolvedSetting:
    env_file, env_inline = ENV_VARS["private_key_file"], ENV_VARS["private_key"]
    levels = [
        (
            "explicit argument 'private_key_file' or 'private_key'",
            ("explicit argument 'private_key_file'", args.get("private_key_file")),
            ("explicit argument 'private_key'", args.get("private_key")),
        ),
        (
            f"environment variable {env_file} or {env_inline}",
            (f"environment variable {env_file}", env.get(env_file)),
            (f"environment variable {env_inline}", env.get(env_inline)),
        ),
        (
            f"{toml_place} key 'private_key_file' or 'private_key'",
            (f"{toml_place} key 'private_key_file'", table.get("private_key_file")),
            (f"{toml_place} key 'private_key'", table.get("private_key")),
        ),
    ]
    looked_in: list[str] = []
    for level_place, (file_place, file_value), (inline_place, inline_value) in levels:
        looked_in.append(level_place)
        path_text, inline_text = _text(file_value), _text(inline_value)
        if path_text is not None and inline_text is not None:
            problems.append(
                Problem(
                    path="private_key",
                    message=f"both {file_place} and {inline_place} are set; keep only one",
                )
            )
        if path_text is not None:
            reference = KeyReference(file=Path(path_text).expanduser())
            return ResolvedSetting(
                name="private_key", value=reference, source=file_place, looked_in=tuple(looked_in)
            )
        if inline_text is not None:
            raw = inline_value if isinstance(inline_value, bytes) else str(inline_value)
            reference = KeyReference(inline=Secret(raw))
            return ResolvedSetting(
                name="private_key",
                value=reference,
                source=inline_place,
                looked_in=tuple(looked_in),
            )
    return ResolvedSetting(name="private_key", value=None, source=None, looked_in=tuple(looked_in))


def validate_settings(resolved: ResolvedSettings) -> list[Problem]:
    """Every problem with the values found (not counting missing ones), each with its source."""
    problems = list(resolved.problems)
    text = resolved.text
    account = text("account")
    if account is not None and not _ACCOUNT_PATTERN.fullmatch(account):
        problems.append(
            Problem(
                path="account",
                message=f"'{account}' (from {resolved.source('account')}) is not an account "
                "identifier: only letters, digits, '_', '-' and '.' (e.g. myorg-myaccount)",
            )
        )
    authenticator = text("authenticator")
    if authenticator is not None and authenticator.upper() != KEY_PAIR_AUTHENTICATOR:
        problems.append(
            Problem(
                path="authenticator",
                message=f"'{authenticator}' (from {resolved.source('authenticator')}): only "
                f"key-pair authentication ({KEY_PAIR_AUTHENTICATOR}) is supported",
            )
        )
    port = text("port")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        problems.append(
            Problem(
                path="port",
                message=f"'{port}' (from {resolved.source('port')}) is not a port number",
            )
        )
    protocol = text("protocol")
    if protocol is not None and protocol.lower() not in {"http", "https"}:
        problems.append(
            Problem(
                path="protocol",
                message=f"'{protocol}' (from {resolved.source('protocol')}) is not http or https",
            )
        )
    return problems


def missing_settings(resolved: ResolvedSettings) -> list[Problem]:
    """One problem per required setting found nowhere, listing every place that was searched."""
    return [
        Problem(
            path=name,
            message="not set; looked in " + ", ".join(resolved.settings[name].looked_in),
        )
        for name in REQUIRED_SETTINGS
        if resolved.value(name) is None
    ]


def credentials_from_settings(resolved: ResolvedSettings) -> SnowflakeCredentials:
    """Credentials from resolved settings; raises when a connection, value or setting is wrong.

    A configuration file that exists but cannot be used is reported first, on its own: it is
    what to fix, and the settings it would have given would only show up as missing."""
    file_problems = [p for p in resolved.problems if p.path.endswith(".toml")]
    if file_problems:
        raise InvalidSettingsError(file_problems, source="Snowflake configuration")
    if resolved.connection_error:
        raise ConnectionNotFoundError(resolved.connection_error)
    invalid = validate_settings(resolved)
    if invalid:
        raise InvalidSettingsError(invalid, source="Snowflake settings")
    missing = missing_settings(resolved)
    if missing:
        raise MissingSettingsError(missing)
    text = resolved.text
    key = resolved.value("private_key")
    passphrase = resolved.value("private_key_file_pwd")
    assert isinstance(key, KeyReference)
    port = text("port")
    protocol = text("protocol")
    return SnowflakeCredentials(
        account=text("account") or "",
        user=text("user") or "",
        private_key_file=key.file,
        private_key=key.inline,
        private_key_passphrase=passphrase if isinstance(passphrase, Secret) else None,
        role=text("role"),
        warehouse=text("warehouse"),
        database=text("database"),
        schema=text("schema"),
        host=text("host"),
        port=int(port) if port is not None else None,
        protocol=protocol.lower() if protocol is not None else None,
        connection_name=resolved.connection_name if resolved.connection_found else None,
        sources={
            name: setting.source
            for name, setting in resolved.settings.items()
            if setting.source is not None
        },
    )


def resolve_credentials(
    *,
    account: str | None = None,
    user: str | None = None,
    private_key_file: str | Path | None = None,
    private_key: str | bytes | None = None,
    private_key_passphrase: str | bytes | None = None,
    role: str | None = None,
    warehouse: str | None = None,
    database: str | None = None,
    schema: str | None = None,
    host: str | None = None,
    port: int | str | None = None,
    protocol: str | None = None,
    connection_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SnowflakeCredentials:
    """Resolve credentials: explicit arguments > environment variables > connections.toml.

    Raises `MissingSettingsError` (listing, per missing value, every place searched),
    `ConnectionNotFoundError` or `InvalidSettingsError`. The key itself is not loaded here: see
    `connectors.snowflake.auth.load_configured_key`.
    """
    arguments: dict[str, object] = {
        "account": account,
        "user": user,
        "private_key_file": private_key_file,
        "private_key": private_key,
        "private_key_file_pwd": private_key_passphrase,
        "role": role,
        "warehouse": warehouse,
        "database": database,
        "schema": schema,
        "host": host,
        "port": port,
        "protocol": protocol,
    }
    resolved = resolve_settings(arguments, connection_name=connection_name, environ=environ)
    return credentials_from_settings(resolved)
