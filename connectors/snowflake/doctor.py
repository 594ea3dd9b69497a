"""Offline diagnosis of a Snowflake key-pair configuration (`pricing-lab keys doctor`).

Nothing here talks to Snowflake. It resolves the settings like a connection would, says where each
one came from, tries to load the key, and reports every problem at once: missing values (with the
places searched), wrong or missing passphrase, a public key where a private one is needed, bad
base64, a non-RSA key, a key file other users can read. It ends with the normalised account and
user and the JWT issuer Snowflake will check. Secrets are reported as set / not set, never shown.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from connectors.snowflake.config import (
    KeyReference,
    ResolvedSettings,
    Secret,
    missing_settings,
    resolve_settings,
    validate_settings,
)
from connectors.snowflake.errors import KeyLoadError
from connectors.snowflake.keys import (
    MINIMUM_KEY_BITS,
    jwt_issuer,
    jwt_subject,
    load_private_key,
    normalise_account,
    normalise_user,
    read_key_file,
)

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One finding: `code` is stable for programs, `message` is for people."""

    level: Level
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingReport:
    """A setting as the doctor shows it: secrets only as `set (hidden)`."""

    name: str
    shown: str | None
    source: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnosis:
    """The doctor's report: settings with their origin, checks, and the JWT naming."""

    connection_name: str
    connection_name_source: str
    connections_file: str
    settings: tuple[SettingReport, ...]
    checks: tuple[Check, ...]
    account: str | None
    user: str | None
    key_format: str | None
    fingerprint: str | None
    jwt_issuer: str | None
    jwt_subject: str | None

    @property
    def errors(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.level == "error")

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.level == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (no secrets) for `keys doctor --json`."""
        return {
            "ok": self.ok,
            "connection": {
                "name": self.connection_name,
                "name_source": self.connection_name_source,
                "connections_file": self.connections_file,
            },
            "settings": {s.name: {"value": s.shown, "source": s.source} for s in self.settings},
            "checks": [
                {"level": c.level, "code": c.code, "message": c.message} for c in self.checks
            ],
            "account": self.account,
            "user": self.user,
            "key_format": self.key_format,
            "fingerprint": self.fingerprint,
            "jwt_issuer": self.jwt_issuer,
            "jwt_subject": self.jwt_subject,
        }


def _shown(value: str | Secret | KeyReference | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, Secret):
        return "set (hidden)"
    if isinstance(value, KeyReference):
        return f"file {value.file}" if value.file is not None else "key text (hidden)"
    return value


def _group_or_other_access(path: Path) -> int | None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def _file_checks(resolved: ResolvedSettings, checks: list[Check]) -> None:
    key = resolved.value("private_key")
    if isinstance(key, KeyReference) and key.file is not None and key.file.is_file():
        mode = _group_or_other_access(key.file)
        if mode is not None:
            checks.append(
                Check(
                    level="warning",
                    code="key_file_permissions",
                    message=f"key file {key.file} can be read by group or others "
                    f"(mode {mode:04o}); run `chmod 600 {key.file}`",
                )
            )
    pwd_source = resolved.source("private_key_file_pwd") or ""
    if str(resolved.connections_file) in pwd_source:
        mode = _group_or_other_access(resolved.connections_file)
        if mode is not None:
            checks.append(
                Check(
                    level="warning",
                    code="connections_file_permissions",
                    message=f"{resolved.connections_file} holds a passphrase and can be read by "
                    f"group or others (mode {mode:04o}); run "
                    f"`chmod 600 {resolved.connections_file}`",
                )
            )


def diagnose(
    arguments: Mapping[str, object] | None = None,
    *,
    connection_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Diagnosis:
    """Diagnose the configuration offline: every problem, each with where it came from."""
    resolved = resolve_settings(arguments, connection_name=connection_name, environ=environ)
    checks: list[Check] = []
    if resolved.connection_error:
        checks.append(
            Check(level="error", code="connection_not_found", message=resolved.connection_error)
        )
    for problem in validate_settings(resolved):
        code = "config_file_unusable" if problem.path.endswith(".toml") else "invalid_setting"
        checks.append(Check(level="error", code=code, message=str(problem)))
    for problem in missing_settings(resolved):
        checks.append(Check(level="error", code="missing_setting", message=str(problem)))
    for key_name in resolved.unknown_toml_keys:
        note = " (only key-pair authentication is used)" if key_name == "password" else ""
        checks.append(
            Check(
                level="warning",
                code="unknown_toml_key",
                message=f"{resolved.connections_file} [{resolved.connection_name}] key "
                f"'{key_name}' is not used{note}",
            )
        )
    _file_checks(resolved, checks)

    fingerprint = key_format = None
    key = resolved.value("private_key")
    if isinstance(key, KeyReference):
        secret = resolved.value("private_key_file_pwd")
        passphrase = secret.reveal_bytes() if isinstance(secret, Secret) else None
        source = key.describe(resolved.source("private_key") or "")
        try:
            data = read_key_file(key.file) if key.file is not None else None
            if data is None:
                assert key.inline is not None
                data = key.inline.reveal_bytes()
            loaded = load_private_key(data, passphrase=passphrase, source=source)
        except KeyLoadError as exc:
            checks.append(Check(level="error", code=exc.reason, message=str(exc)))
        else:
            fingerprint, key_format = loaded.fingerprint, loaded.key_format
            checks.append(
                Check(
                    level="ok",
                    code="key_loads",
                    message=f"{source} loads: {loaded.key_format}, RSA {loaded.bits} bits",
                )
            )
            if loaded.passphrase_ignored:
                checks.append(
                    Check(
                        level="warning",
                        code="passphrase_unused",
                        message=f"a passphrase is set ({resolved.source('private_key_file_pwd')})"
                        " but the key is not encrypted; it is ignored",
                    )
                )
            if loaded.bits < MINIMUM_KEY_BITS:
                checks.append(
                    Check(
                        level="error",
                        code="key_too_short",
                        message=f"the key has {loaded.bits} bits; Snowflake needs at least "
                        f"{MINIMUM_KEY_BITS}",
                    )
                )

    account = resolved.value("account")
    user = resolved.value("user")
    account_text = account if isinstance(account, str) else None
    user_text = user if isinstance(user, str) else None
    if account_text is not None and "snowflakecomputing" in account_text.lower():
        checks.append(
            Check(
                level="warning",
                code="account_is_url",
                message=f"account '{account_text}' looks like a URL; use the account identifier "
                "(e.g. myorg-myaccount), the part before .snowflakecomputing.com",
            )
        )
    issuer = subject = None
    if account_text is not None and user_text is not None:
        subject = jwt_subject(account_text, user_text)
        if fingerprint is not None:
            issuer = jwt_issuer(account_text, user_text, fingerprint)

    return Diagnosis(
        connection_name=resolved.connection_name,
        connection_name_source=resolved.connection_name_source,
        connections_file=str(resolved.connections_file),
        settings=tuple(
            SettingReport(name=s.name, shown=_shown(s.value), source=s.source)
            for s in resolved.settings.values()
        ),
        checks=tuple(checks),
        account=normalise_account(account_text) if account_text is not None else None,
        user=normalise_user(user_text) if user_text is not None else None,
        key_format=key_format,
        fingerprint=fingerprint,
        jwt_issuer=issuer,
        jwt_subject=subject,
    )


def format_diagnosis(diagnosis: Diagnosis) -> str:
    """The doctor's report as text for a terminal."""
    lines = [
        f"Snowflake key-pair configuration: connection '{diagnosis.connection_name}' "
        f"({diagnosis.connection_name_source}), file {diagnosis.connections_file}",
        "Settings:",
    ]
    for setting in diagnosis.settings:
        shown = setting.shown if setting.shown is not None else "-"
        source = f"from {setting.source}" if setting.source else "not set"
        lines.append(f"  {setting.name:<21} {shown:<40} {source}")
    lines.append("Checks:")
    labels = {"ok": "ok     ", "warning": "WARNING", "error": "ERROR  "}
    for check in diagnosis.checks:
        text = check.message.replace("\n", "\n           ")
        lines.append(f"  {labels[check.level]}  {text}")
    lines += [
        f"Normalised account: {diagnosis.account or '-'}",
        f"Normalised user:    {diagnosis.user or '-'}",
        f"Key fingerprint:    {diagnosis.fingerprint or '-'}",
        f"JWT issuer:         {diagnosis.jwt_issuer or '-'}",
        f"JWT subject:        {diagnosis.jwt_subject or '-'}",
    ]
    errors, warnings = len(diagnosis.errors), len(diagnosis.warnings)
    verdict = "OK" if not errors else "PROBLEMS FOUND"
    lines.append(
        f"Result: {verdict} ({errors} error{'s' * (errors != 1)}, "
        f"{warnings} warning{'s' * (warnings != 1)})"
    )
    return "\n".join(lines)
