"""Settings: arguments, then environment, then connections.toml; errors say where we looked."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.snowflake.auth import load_configured_key
from connectors.snowflake.config import SnowflakeCredentials, resolve_credentials
from connectors.snowflake.errors import (
    ConnectionNotFoundError,
    InvalidSettingsError,
    MissingSettingsError,
)
from tests.connectors.snowflake.conftest import PASSPHRASE, KeyFiles


def write_home(folder: Path, connections: str, config: str | None = None) -> dict[str, str]:
    """A SNOWFLAKE_HOME with the given connections.toml (and config.toml); returns the env."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "connections.toml").write_text(connections)
    (folder / "connections.toml").chmod(0o600)
    if config is not None:
        (folder / "config.toml").write_text(config)
    return {"SNOWFLAKE_HOME": str(folder)}


TOML = """
[default]
account = "toml-account"
user = "toml_user"
private_key_file = "/keys/toml.p8"
role = "TOML_ROLE"
warehouse = "TOML_WH"
port = 8443

[prod]
account = "prod-account"
user = "prod_user"
private_key_file = "/keys/prod.p8"
"""


def test_arguments_beat_environment_beat_connections_toml(tmp_path: Path) -> None:
    env = write_home(tmp_path / "home", TOML)
    env |= {"SNOWFLAKE_USER": "env_user", "SNOWFLAKE_ROLE": "ENV_ROLE"}
    creds = resolve_credentials(role="ARG_ROLE", environ=env)
    assert creds.account == "toml-account"  # only in connections.toml
    assert creds.user == "env_user"  # environment beats the file
    assert creds.role == "ARG_ROLE"  # argument beats both
    assert creds.warehouse == "TOML_WH"
    assert creds.port == 8443
    assert creds.private_key_file == Path("/keys/toml.p8")
    assert (
        creds.sources["account"]
        == f"{tmp_path / 'home' / 'connections.toml'} [default] key 'account'"
    )
    assert creds.sources["user"] == "environment variable SNOWFLAKE_USER"
    assert creds.sources["role"] == "explicit argument 'role'"


def test_environment_key_beats_connections_toml_key(tmp_path: Path) -> None:
    env = write_home(tmp_path / "home", TOML)
    env["SNOWFLAKE_PRIVATE_KEY"] = "PEM text would be here"
    creds = resolve_credentials(environ=env)
    assert creds.private_key_file is None
    assert creds.private_key is not None
    assert creds.key_source == "private key from environment variable SNOWFLAKE_PRIVATE_KEY"


@pytest.mark.parametrize(
    ("how", "expected_user"),
    [
        ("argument", "prod_user"),
        ("env", "prod_user"),
        ("config.toml", "prod_user"),
        ("none", "toml_user"),
    ],
)
def test_connection_name_from_argument_env_or_config_toml(
    tmp_path: Path, how: str, expected_user: str
) -> None:
    config = 'default_connection_name = "prod"\n' if how == "config.toml" else None
    env = write_home(tmp_path / "home", TOML, config)
    if how == "env":
        env["SNOWFLAKE_DEFAULT_CONNECTION_NAME"] = "prod"
    creds = resolve_credentials(connection_name="prod" if how == "argument" else None, environ=env)
    assert creds.user == expected_user


def test_unknown_connection_lists_the_known_ones(tmp_path: Path) -> None:
    env = write_home(tmp_path / "home", TOML)
    with pytest.raises(ConnectionNotFoundError) as caught:
        resolve_credentials(connection_name="staging", environ=env)
    assert "connection 'staging' is not in" in str(caught.value)
    assert "known connections: default, prod" in str(caught.value)


def test_missing_values_say_where_each_was_looked_for(tmp_path: Path) -> None:
    home = tmp_path / "empty-home"
    env = {"SNOWFLAKE_HOME": str(home), "SNOWFLAKE_ACCOUNT": "acme"}
    with pytest.raises(MissingSettingsError) as caught:
        resolve_credentials(environ=env)
    toml = f"{home / 'connections.toml'} [default] (file not found)"
    assert str(caught.value) == (
        "Snowflake connection settings are missing:\n"
        f"  user: not set; looked in explicit argument 'user', environment variable "
        f"SNOWFLAKE_USER, {toml} key 'user'\n"
        f"  private_key: not set; looked in explicit argument 'private_key_file' or "
        f"'private_key', environment variable SNOWFLAKE_PRIVATE_KEY_FILE or "
        f"SNOWFLAKE_PRIVATE_KEY, {toml} key 'private_key_file' or 'private_key'"
    )
    assert caught.value.exit_code == 2


def test_invalid_values_are_all_listed(tmp_path: Path) -> None:
    env = write_home(
        tmp_path / "home",
        '[default]\naccount = "a/b"\nuser = "u"\nprivate_key_file = "/k.p8"\n'
        'authenticator = "snowflake"\nport = "http"\nprotocol = "ftp"\n',
    )
    with pytest.raises(InvalidSettingsError) as caught:
        resolve_credentials(environ=env)
    paths = [problem.path for problem in caught.value.problems]
    assert paths == ["account", "authenticator", "port", "protocol"]
    assert "only key-pair authentication (SNOWFLAKE_JWT) is supported" in str(caught.value)


def test_file_and_inline_key_in_one_place_is_an_error(tmp_path: Path) -> None:
    env = {
        "SNOWFLAKE_HOME": str(tmp_path / "none"),
        "SNOWFLAKE_ACCOUNT": "a",
        "SNOWFLAKE_USER": "u",
        "SNOWFLAKE_PRIVATE_KEY_FILE": "/k.p8",
        "SNOWFLAKE_PRIVATE_KEY": "xyz",
    }
    with pytest.raises(InvalidSettingsError) as caught:
        resolve_credentials(environ=env)
    assert (
        "both environment variable SNOWFLAKE_PRIVATE_KEY_FILE and environment variable "
        "SNOWFLAKE_PRIVATE_KEY are set" in str(caught.value)
    )


@pytest.mark.parametrize("encoding", ["pem", "base64-of-pem", "base64-of-der"])
def test_key_from_environment_variable_loads(
    tmp_path: Path, rsa_keys: dict[str, KeyFiles], encoding: str
) -> None:
    key = rsa_keys["a"]
    pem = key.path("pkcs8_encrypted.pem").read_bytes()
    value = {
        "pem": pem.decode(),
        "base64-of-pem": base64.b64encode(pem).decode(),
        "base64-of-der": base64.b64encode(key.path("pkcs8_encrypted.der").read_bytes()).decode(),
    }[encoding]
    env = {
        "SNOWFLAKE_HOME": str(tmp_path / "none"),
        "SNOWFLAKE_ACCOUNT": "acme",
        "SNOWFLAKE_USER": "loader",
        "SNOWFLAKE_PRIVATE_KEY": value,
        "SNOWFLAKE_PRIVATE_KEY_FILE_PWD": PASSPHRASE,
    }
    loaded = load_configured_key(resolve_credentials(environ=env))
    assert loaded.encrypted
    assert loaded.source == "private key from environment variable SNOWFLAKE_PRIVATE_KEY"
    expected = load_configured_key(
        SnowflakeCredentials(account="a", user="u", private_key_file=key.path("pkcs8.pem"))
    )
    assert loaded.fingerprint == expected.fingerprint


def test_passphrase_prompt_is_used_only_when_needed(rsa_keys: dict[str, KeyFiles]) -> None:
    asked: list[str] = []

    def prompt(message: str) -> str:
        asked.append(message)
        return PASSPHRASE

    path = rsa_keys["a"].path("pkcs8_encrypted.pem")
    creds = SnowflakeCredentials(account="a", user="u", private_key_file=path)
    assert load_configured_key(creds, prompt=prompt).encrypted
    assert asked == [f"Passphrase for key file {path}: "]


def test_credentials_repr_and_str_hide_secrets(
    rsa_keys: dict[str, KeyFiles], assert_no_key_material: Callable[[str], None]
) -> None:
    pem = rsa_keys["a"].path("pkcs1.pem").read_text()
    creds = SnowflakeCredentials(
        account="acme", user="u", private_key=pem, private_key_passphrase=PASSPHRASE
    )
    for text in (repr(creds), str(creds), f"{creds}", repr(creds.private_key)):
        assert "******" in text
        assert_no_key_material(text)
    assert creds.private_key is not None and creds.private_key.reveal() == pem


BROKEN_FILES = {
    "not valid TOML": ('[default]\naccount = "acme"\nuser "loader"\n', "at line 3, column 6"),
    "not UTF-8 text": (b'[default]\naccount = "\xff\xfe"\n', "is not UTF-8 text (at line 2)"),
    "a connection that is not a table": ('default = "acme"\n', "not a table of settings"),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_FILES))
@pytest.mark.parametrize("named", [None, "default"])
def test_an_existing_but_unusable_connections_toml_says_so_with_the_place_and_the_fix(
    tmp_path: Path, broken: str, named: str | None
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    content, place = BROKEN_FILES[broken]
    file = home / "connections.toml"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content)
    env = {"SNOWFLAKE_HOME": str(home), "SNOWFLAKE_USER": "loader"}

    with pytest.raises((InvalidSettingsError, ConnectionNotFoundError)) as caught:
        resolve_credentials(connection_name=named, environ=env)

    message = str(caught.value)
    assert str(file) in message and place in message
    assert "file not found" not in message and "not set; looked in" not in message
    assert caught.value.exit_code == 2
    if broken != "a connection that is not a table":
        assert "fix the file" in message and "SNOWFLAKE_HOME" in message


def test_a_folder_named_connections_toml_is_not_reported_as_missing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "connections.toml").mkdir(parents=True)

    with pytest.raises(InvalidSettingsError) as caught:
        resolve_credentials(connection_name="prod", environ={"SNOWFLAKE_HOME": str(home)})

    assert f"{home / 'connections.toml'}: is a folder, not a file" in str(caught.value)
