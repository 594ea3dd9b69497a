"""`pricing-lab keys generate|fingerprint|rotate|doctor`, a plug-in of the `pricing_lab.cli` group.

`register(subparsers)` is the entry point declared in pyproject.toml. It adds the `keys` group and,
through `connectors.snowflake.export_cli.register_export(subparsers)`, `export snowflake`.
Passphrases come from an environment variable or a terminal prompt, never from the command line.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from connectors.snowflake.config import ENV_VARS
from connectors.snowflake.errors import PassphraseMissingError, SnowflakeConfigError
from connectors.snowflake.keys import (
    DEFAULT_KEY_BITS,
    LoadedPublicKey,
    generate_key_pair,
    load_public_key,
    public_key_body,
    read_key_file,
    sql_identifier,
)

PASSPHRASE_ENV = ENV_VARS["private_key_file_pwd"]
PRIVATE_KEY_NAME = "rsa_key.p8"
PUBLIC_KEY_NAME = "rsa_key.pub"
SLOT_NAMES = {"1": "RSA_PUBLIC_KEY", "2": "RSA_PUBLIC_KEY_2"}


def register(subparsers: Any) -> None:
    """Add the `keys` command group and `export snowflake`."""
    # Imported when registering, not with this module: the export pulls in pyarrow and Polars.
    from connectors.snowflake.export_cli import register_export

    keys = subparsers.add_parser(
        "keys",
        help="Snowflake key-pair tooling: generate, fingerprint, rotate, doctor",
        description="Key-pair (JWT) authentication tooling for Snowflake "
        "(docs/snowflake-auth.md). Passphrases "
        f"are read from an environment variable (default {PASSPHRASE_ENV}) or prompted for, "
        "never taken from the command line.",
    )
    commands = keys.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND")
    commands.required = True
    _register_generate(commands)
    _register_fingerprint(commands)
    _register_rotate(commands)
    _register_doctor(commands)
    register_export(subparsers)


def passphrase_prompt() -> Any:
    """A prompt function for an encrypted key when stdin is a terminal, else None."""
    if not sys.stdin.isatty():
        return None

    def prompt(message: str) -> str:
        return getpass.getpass(message)

    return prompt


def _add_passphrase_env(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--passphrase-env",
        metavar="NAME",
        default=PASSPHRASE_ENV,
        help=f"environment variable holding the passphrase (default {PASSPHRASE_ENV}); "
        "without it a terminal prompts for it",
    )


def _print_json(payload: object) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


# -- generate -----------------------------------------------------------------------------------


def _register_generate(commands: Any) -> None:
    parser = commands.add_parser(
        "generate",
        allow_abbrev=False,  # `--passphrase` must never pass for `--passphrase-env`
        help="create an encrypted PKCS#8 key pair and print the ALTER USER statement",
        description=f"Write DIR/{PRIVATE_KEY_NAME} (encrypted PKCS#8 PEM, mode 0600) and "
        f"DIR/{PUBLIC_KEY_NAME}; print the fingerprint and the ALTER USER statement.",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    _add_passphrase_env(parser)
    parser.add_argument(
        "--user",
        help=f"Snowflake user for the ALTER USER statement (default ${ENV_VARS['user']})",
    )
    parser.add_argument(
        "--bits", type=int, default=DEFAULT_KEY_BITS, choices=(2048, 3072, 4096), help="key size"
    )
    parser.add_argument("--force", action="store_true", help="replace existing key files")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run_generate)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def run_generate(args: argparse.Namespace) -> int:
    """`keys generate`: new encrypted key pair in --out."""
    out: Path = args.out.expanduser()
    private_path, public_path = out / PRIVATE_KEY_NAME, out / PUBLIC_KEY_NAME
    if out.exists() and not out.is_dir():
        raise SnowflakeConfigError(
            f"{out}: is a file; --out names the folder for {PRIVATE_KEY_NAME} and {PUBLIC_KEY_NAME}"
        )
    existing = [p for p in (private_path, public_path) if p.exists()]
    if existing and not args.force:
        raise SnowflakeConfigError(
            f"{', '.join(map(str, existing))} already exist; use --force to replace them "
            "(the old key stops working once it is unset on the user)"
        )
    passphrase = os.environ.get(args.passphrase_env)
    if not passphrase:
        prompt = passphrase_prompt()
        if prompt is None:
            raise SnowflakeConfigError(
                f"no passphrase for the new key: set the environment variable "
                f"{args.passphrase_env} or run in a terminal to be prompted"
            )
        passphrase = prompt("Passphrase for the new key: ")
        if passphrase != prompt("Repeat the passphrase: "):
            raise SnowflakeConfigError("the two passphrases differ; nothing was written")
        if not passphrase:
            raise SnowflakeConfigError("an empty passphrase is not allowed; nothing was written")
    pair = generate_key_pair(passphrase, bits=args.bits)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path in existing:
            path.unlink()
        _write_private(private_path, pair.encrypted_private_pem)
        public_path.write_text(pair.public_pem, encoding="ascii")
        public_path.chmod(0o644)
    except OSError as exc:  # e.g. a read-only or missing place: bad input, not a bug
        raise SnowflakeConfigError(
            f"{out}: cannot write the key files: {exc.strerror or exc}"
        ) from None
    user = args.user or os.environ.get(ENV_VARS["user"])
    user_sql = sql_identifier(user) if user else "<user>"
    alter = f"ALTER USER {user_sql} SET RSA_PUBLIC_KEY='{pair.public_key_body}';"
    if args.json:
        _print_json(
            {
                "private_key_file": str(private_path),
                "public_key_file": str(public_path),
                "fingerprint": pair.fingerprint,
                "bits": pair.bits,
                "alter_user_sql": alter,
            }
        )
        return 0
    lines = [
        f"Private key (encrypted PKCS#8, mode 0600): {private_path}",
        f"Public key: {public_path}",
        f"Fingerprint: {pair.fingerprint}",
        "",
        "Register the public key on the Snowflake user (needs SECURITYADMIN or ownership):",
        f"  {alter}",
        f"Check that DESC USER {user_sql} shows RSA_PUBLIC_KEY_FP = {pair.fingerprint}.",
        "",
        f"Then point clients at the key: {ENV_VARS['private_key_file']}={private_path} with "
        f"the passphrase in {PASSPHRASE_ENV} (or private_key_file / private_key_file_pwd in "
        "connections.toml).",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# -- fingerprint --------------------------------------------------------------------------------


def _register_fingerprint(commands: Any) -> None:
    parser = commands.add_parser(
        "fingerprint",
        allow_abbrev=False,  # `--passphrase` must never pass for `--passphrase-env`
        help="print the SHA256 fingerprint of a private or public key",
        description="Print SHA256:base64(sha256(DER SubjectPublicKeyInfo)) of a private or "
        "public key file ('-' reads stdin): what DESC USER shows as RSA_PUBLIC_KEY_FP.",
    )
    parser.add_argument("file", metavar="FILE", help="key file (PEM, DER or base64), or -")
    _add_passphrase_env(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run_fingerprint)


def _load_public(file: str, passphrase_env: str) -> LoadedPublicKey:
    if file == "-":
        data, source = sys.stdin.buffer.read(), "standard input"
    else:
        path = Path(file).expanduser()
        data, source = read_key_file(path), f"key file {path}"
    passphrase = os.environ.get(passphrase_env) or None
    try:
        return load_public_key(data, passphrase=passphrase, source=source)
    except PassphraseMissingError:
        prompt = passphrase_prompt() if file != "-" else None
        if prompt is None:
            raise
        return load_public_key(data, passphrase=prompt(f"Passphrase for {source}: "), source=source)


def run_fingerprint(args: argparse.Namespace) -> int:
    """`keys fingerprint FILE`."""
    loaded = _load_public(args.file, args.passphrase_env)
    if args.json:
        _print_json(
            {
                "file": args.file,
                "fingerprint": loaded.fingerprint,
                "key_format": loaded.key_format,
                "from_private_key": loaded.from_private_key,
                "bits": loaded.bits,
            }
        )
    else:
        sys.stdout.write(loaded.fingerprint + "\n")
    return 0


# -- rotate -------------------------------------------------------------------------------------


def _register_rotate(commands: Any) -> None:
    parser = commands.add_parser(
        "rotate",
        allow_abbrev=False,  # `--passphrase` must never pass for `--passphrase-env`
        help="print the ordered steps (with SQL) to rotate a user's key without downtime",
        description="Print the steps to rotate a key: register the new public key in the free "
        "slot, switch the clients, then unset the old key.",
    )
    parser.add_argument("--user", required=True, help="Snowflake user whose key rotates")
    parser.add_argument(
        "--new-key",
        metavar="FILE",
        help="the new public key (or private key) file; without it the steps start by creating one",
    )
    parser.add_argument(
        "--free-slot",
        choices=("2", "1"),
        default="2",
        help="slot for the new key: 2 = RSA_PUBLIC_KEY_2 (default), 1 = RSA_PUBLIC_KEY; the old "
        "key is in the other slot",
    )
    _add_passphrase_env(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run_rotate)


def rotation_steps(
    user: str, *, new_key_body: str | None, new_fingerprint: str | None, free_slot: str = "2"
) -> list[dict[str, str]]:
    """The ordered rotation steps, each with a title and (when it is SQL) the statement."""
    new_slot = SLOT_NAMES[free_slot]
    old_slot = SLOT_NAMES["1" if free_slot == "2" else "2"]
    ident = sql_identifier(user)
    body = new_key_body or "<base64 body of the new public key>"
    fp = new_fingerprint or "<fingerprint of the new key>"
    steps: list[dict[str, str]] = []
    if new_key_body is None:
        steps.append(
            {
                "title": "Create the new key pair",
                "command": "pricing-lab keys generate --out DIR",
            }
        )
    steps += [
        {
            "title": f"Register the new public key in the free slot {new_slot} (the old key "
            f"in {old_slot} keeps working)",
            "sql": f"ALTER USER {ident} SET {new_slot}='{body}';",
        },
        {
            "title": f"Check that {new_slot}_FP is {fp}",
            "sql": f"DESC USER {ident};",
        },
        {
            "title": "Switch every client to the new private key (SNOWFLAKE_PRIVATE_KEY_FILE or "
            "private_key_file in connections.toml, and its passphrase), then check each one "
            "with `pricing-lab keys doctor` and a real connection",
        },
        {
            "title": f"Unset the old key in {old_slot}: from now on it is refused",
            "sql": f"ALTER USER {ident} UNSET {old_slot};",
        },
        {
            "title": f"Check that {old_slot}_FP is empty; the next rotation uses {old_slot}",
            "sql": f"DESC USER {ident};",
        },
    ]
    return steps


def run_rotate(args: argparse.Namespace) -> int:
    """`keys rotate --user U [--new-key FILE]`."""
    body = fingerprint = None
    if args.new_key:
        loaded = _load_public(args.new_key, args.passphrase_env)
        body, fingerprint = public_key_body(loaded.key), loaded.fingerprint
    steps = rotation_steps(
        args.user, new_key_body=body, new_fingerprint=fingerprint, free_slot=args.free_slot
    )
    if args.json:
        _print_json({"user": args.user, "new_key_fingerprint": fingerprint, "steps": steps})
        return 0
    lines = [f"Key rotation for user {args.user}, in this order:"]
    for number, step in enumerate(steps, start=1):
        lines.append(f"{number}. {step['title']}")
        for key in ("command", "sql"):
            if key in step:
                lines.append(f"     {step[key]}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# -- doctor -------------------------------------------------------------------------------------


def _register_doctor(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        allow_abbrev=False,  # `--passphrase` must never pass for `--passphrase-env`
        help="diagnose the key-pair configuration offline",
        description="Resolve the Snowflake settings (arguments > environment > "
        "connections.toml), say where each came from, load the key and report every problem, "
        "then print the normalised account and user and the JWT issuer. Exit 2 when any check "
        "fails. Never contacts Snowflake.",
    )
    parser.add_argument("--connection", metavar="NAME", help="connection in connections.toml")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    """`keys doctor [--connection NAME] [--json]`: exit 0 when fine, 2 when a check fails."""
    from connectors.snowflake.doctor import diagnose, format_diagnosis

    diagnosis = diagnose(connection_name=args.connection)
    if args.json:
        _print_json(diagnosis.to_json())
    else:
        sys.stdout.write(format_diagnosis(diagnosis) + "\n")
    return 0 if diagnosis.ok else 2
