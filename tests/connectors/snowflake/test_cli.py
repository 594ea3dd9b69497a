"""`pricing-lab keys generate|fingerprint|rotate|doctor` as a user runs them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connectors.snowflake.config import ENV_VARS
from pricing_lab.cli import main
from tests.connectors.snowflake.conftest import PASSPHRASE, KeyFiles
from tests.connectors.snowflake.openssl_tools import (
    openssl_fingerprint,
    openssl_public_body,
    openssl_public_pem,
)

CaptureFixture = pytest.CaptureFixture[str]


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No Snowflake variable from the machine leaks in; SNOWFLAKE_HOME is an empty folder."""
    for name in (*ENV_VARS.values(), "SNOWFLAKE_DEFAULT_CONNECTION_NAME"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "snowflake-home"
    home.mkdir()
    monkeypatch.setenv("SNOWFLAKE_HOME", str(home))
    return monkeypatch


def test_generate_writes_an_encrypted_0600_key_and_prints_the_alter_user_statement(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: CaptureFixture
) -> None:
    clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_FILE_PWD", PASSPHRASE)
    out = tmp_path / "keys"
    assert main(["keys", "generate", "--out", str(out), "--user", "etl_loader"]) == 0
    printed = capsys.readouterr().out
    private, public = out / "rsa_key.p8", out / "rsa_key.pub"
    assert sorted(p.name for p in out.iterdir()) == ["rsa_key.p8", "rsa_key.pub"]
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = serialization.load_pem_private_key(private.read_bytes(), PASSPHRASE.encode())
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert openssl_public_pem(private) == public.read_bytes()
    fingerprint = openssl_fingerprint(public.read_bytes())
    assert f"Fingerprint: {fingerprint}" in printed
    body = openssl_public_body(public.read_bytes())
    assert f"ALTER USER etl_loader SET RSA_PUBLIC_KEY='{body}';" in printed
    assert PASSPHRASE not in printed and "PRIVATE KEY-----" not in printed


def test_generate_refuses_to_overwrite_and_needs_a_passphrase(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: CaptureFixture
) -> None:
    out = tmp_path / "keys"
    assert main(["keys", "generate", "--out", str(out)]) == 2
    assert "no passphrase for the new key: set the environment variable " in capsys.readouterr().err
    assert not out.exists()
    clean_env.setenv("MY_KEY_PASS", PASSPHRASE)
    assert main(["keys", "generate", "--out", str(out), "--passphrase-env", "MY_KEY_PASS"]) == 0
    first = (out / "rsa_key.p8").read_bytes()
    capsys.readouterr()
    assert main(["keys", "generate", "--out", str(out), "--passphrase-env", "MY_KEY_PASS"]) == 2
    assert "already exist; use --force" in capsys.readouterr().err
    assert (out / "rsa_key.p8").read_bytes() == first


def test_generate_into_a_file_or_an_unwritable_place_is_bad_input(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: CaptureFixture
) -> None:
    clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_FILE_PWD", PASSPHRASE)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main(["keys", "generate", "--out", str(a_file)]) == 2
    assert "is a file; --out names the folder" in capsys.readouterr().err
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o500)
    if os.access(read_only, os.W_OK):  # root writes anywhere: point below a file instead
        read_only = a_file
    assert main(["keys", "generate", "--out", str(read_only / "keys")]) == 2
    assert "cannot write the key files" in capsys.readouterr().err


def test_passphrase_is_never_accepted_on_the_command_line(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["keys", "generate", "--out", str(tmp_path), "--passphrase", "secret"])
    assert caught.value.code == 2
    assert "unrecognized arguments: --passphrase" in capsys.readouterr().err


@pytest.mark.parametrize(
    "file_name", ["public.pem", "pkcs8_encrypted.pem", "pkcs1.pem", "pkcs8_encrypted.der"]
)
def test_fingerprint_equals_the_openssl_recipe(
    clean_env: pytest.MonkeyPatch,
    rsa_keys: dict[str, KeyFiles],
    file_name: str,
    capsys: CaptureFixture,
) -> None:
    clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_FILE_PWD", PASSPHRASE)
    path = rsa_keys["a"].path(file_name)
    assert main(["keys", "fingerprint", str(path)]) == 0
    assert capsys.readouterr().out == openssl_fingerprint(openssl_public_pem(path)) + "\n"


def test_fingerprint_json(
    clean_env: pytest.MonkeyPatch, rsa_keys: dict[str, KeyFiles], capsys: CaptureFixture
) -> None:
    path = rsa_keys["b"].path("public.pem")
    assert main(["keys", "fingerprint", str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["fingerprint"] == openssl_fingerprint(rsa_keys["b"].public_pem)
    assert payload["from_private_key"] is False


def test_wrong_passphrase_is_one_clear_line_exit_2_no_traceback(
    rsa_keys: dict[str, KeyFiles], assert_no_key_material: Callable[[str], None]
) -> None:
    path = rsa_keys["a"].path("pkcs8_encrypted.pem")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNOWFLAKE_")}
    env["SNOWFLAKE_PRIVATE_KEY_FILE_PWD"] = "not the right one"
    result = subprocess.run(
        [sys.executable, "-m", "pricing_lab", "keys", "fingerprint", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"pricing-lab: key file {path}: the passphrase does not decrypt"
    )
    assert "not the right one" not in result.stderr
    assert_no_key_material(result.stderr)


def test_rotate_prints_the_steps_in_order(
    clean_env: pytest.MonkeyPatch, rsa_keys: dict[str, KeyFiles], capsys: CaptureFixture
) -> None:
    new_key = rsa_keys["b"].path("public.pem")
    assert main(["keys", "rotate", "--user", "etl_loader", "--new-key", str(new_key)]) == 0
    text = capsys.readouterr().out
    body = openssl_public_body(rsa_keys["b"].public_pem)
    ordered = [
        f"ALTER USER etl_loader SET RSA_PUBLIC_KEY_2='{body}';",
        f"Check that RSA_PUBLIC_KEY_2_FP is {openssl_fingerprint(rsa_keys['b'].public_pem)}",
        "Switch every client to the new private key",
        "ALTER USER etl_loader UNSET RSA_PUBLIC_KEY;",
    ]
    positions = [text.index(line) for line in ordered]
    assert positions == sorted(positions)

    assert main(["keys", "rotate", "--user", "etl_loader", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert steps[0]["command"] == "pricing-lab keys generate --out DIR"
    sql = [step["sql"] for step in steps if "sql" in step]
    assert sql[0].startswith("ALTER USER etl_loader SET RSA_PUBLIC_KEY_2='<")
    assert sql[1:] == [
        "DESC USER etl_loader;",
        "ALTER USER etl_loader UNSET RSA_PUBLIC_KEY;",
        "DESC USER etl_loader;",
    ]
    assert steps[-2]["sql"] == "ALTER USER etl_loader UNSET RSA_PUBLIC_KEY;"


def _write_connections(home: Path, key_file: Path, extra: str = "") -> None:
    (home / "connections.toml").write_text(
        "[default]\n"
        'account = "acme-test.eu-central-1"\n'
        'user = "etl_loader"\n'
        f'private_key_file = "{key_file}"\n' + extra
    )
    (home / "connections.toml").chmod(0o600)


def test_doctor_on_a_good_configuration(
    clean_env: pytest.MonkeyPatch,
    rsa_keys: dict[str, KeyFiles],
    capsys: CaptureFixture,
    assert_no_key_material: Callable[[str], None],
) -> None:
    home = Path(os.environ["SNOWFLAKE_HOME"])
    key_file = rsa_keys["a"].path("pkcs8_encrypted.pem")
    _write_connections(home, key_file)
    clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_FILE_PWD", PASSPHRASE)
    assert main(["keys", "doctor", "--json"]) == 0
    output = capsys.readouterr().out
    report = json.loads(output)
    fingerprint = openssl_fingerprint(rsa_keys["a"].public_pem)
    assert report["ok"] is True
    assert report["account"] == "ACME-TEST"
    assert report["user"] == "ETL_LOADER"
    assert report["jwt_issuer"] == f"ACME-TEST.ETL_LOADER.{fingerprint}"
    assert report["key_format"] == "encrypted PKCS#8 PEM"
    assert report["settings"]["user"]["source"] == (
        f"{home / 'connections.toml'} [default] key 'user'"
    )
    assert report["settings"]["private_key_file_pwd"] == {
        "value": "set (hidden)",
        "source": "environment variable SNOWFLAKE_PRIVATE_KEY_FILE_PWD",
    }
    assert [c["level"] for c in report["checks"]] == ["ok"]
    assert_no_key_material(output)

    assert main(["keys", "doctor"]) == 0
    text = capsys.readouterr().out
    assert f"JWT issuer:         ACME-TEST.ETL_LOADER.{fingerprint}" in text
    assert "Result: OK (0 errors, 0 warnings)" in text


def _ec_key_file(folder: Path) -> Path:
    path = folder / "ec.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("wrong_passphrase", "wrong_passphrase"),
        ("no_passphrase", "passphrase_missing"),
        ("public_key", "public_key_given"),
        ("bad_base64", "bad_base64"),
        ("ec_key", "unsupported_key_type"),
        ("missing_user", "missing_setting"),
    ],
)
def test_doctor_names_each_problem(
    clean_env: pytest.MonkeyPatch,
    rsa_keys: dict[str, KeyFiles],
    tmp_path: Path,
    capsys: CaptureFixture,
    assert_no_key_material: Callable[[str], None],
    case: str,
    code: str,
) -> None:
    key = rsa_keys["a"]
    clean_env.setenv("SNOWFLAKE_ACCOUNT", "acme-test")
    clean_env.setenv("SNOWFLAKE_USER", "etl_loader")
    clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_FILE", str(key.path("pkcs8_encrypted.pem")))
    clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_FILE_PWD", PASSPHRASE)
    if case == "wrong_passphrase":
        clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_FILE_PWD", "wrong horse")
    elif case == "no_passphrase":
        clean_env.delenv("SNOWFLAKE_PRIVATE_KEY_FILE_PWD")
    elif case == "public_key":
        clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_FILE", str(key.path("public.pem")))
    elif case == "bad_base64":
        clean_env.delenv("SNOWFLAKE_PRIVATE_KEY_FILE")
        clean_env.setenv("SNOWFLAKE_PRIVATE_KEY", "MIIE%%%truncated")
    elif case == "ec_key":
        clean_env.setenv("SNOWFLAKE_PRIVATE_KEY_FILE", str(_ec_key_file(tmp_path)))
    elif case == "missing_user":
        clean_env.delenv("SNOWFLAKE_USER")
    assert main(["keys", "doctor", "--json"]) == 2
    output = capsys.readouterr().out
    report = json.loads(output)
    assert report["ok"] is False
    assert [c["code"] for c in report["checks"] if c["level"] == "error"] == [code]
    assert "wrong horse" not in output
    assert_no_key_material(output)


def test_doctor_warns_about_a_key_file_others_can_read(
    clean_env: pytest.MonkeyPatch,
    rsa_keys: dict[str, KeyFiles],
    tmp_path: Path,
    capsys: CaptureFixture,
) -> None:
    key_file = tmp_path / "shared.p8"
    key_file.write_bytes(rsa_keys["a"].path("pkcs8.pem").read_bytes())
    key_file.chmod(0o644)
    _write_connections(Path(os.environ["SNOWFLAKE_HOME"]), key_file)
    assert main(["keys", "doctor", "--json"]) == 0  # a warning, not an error
    checks = json.loads(capsys.readouterr().out)["checks"]
    warning = next(c for c in checks if c["level"] == "warning")
    assert warning["code"] == "key_file_permissions"
    assert "mode 0644" in warning["message"] and f"chmod 600 {key_file}" in warning["message"]


def test_doctor_unknown_connection_is_an_error(
    clean_env: pytest.MonkeyPatch, capsys: CaptureFixture
) -> None:
    assert main(["keys", "doctor", "--connection", "nightly"]) == 2
    text = capsys.readouterr().out
    assert "ERROR    connection 'nightly' is not in" in text
    assert "Result: PROBLEMS FOUND" in text


@pytest.mark.parametrize("command", ["generate", "fingerprint", "rotate", "doctor"])
def test_every_keys_command_has_help(command: str, capsys: CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["keys", command, "--help"])
    assert caught.value.code == 0
    assert f"pricing-lab keys {command}" in capsys.readouterr().out


def test_keys_tools_and_config_import_without_the_snowflake_driver() -> None:
    code = (
        "import sys, connectors.snowflake.cli, connectors.snowflake.auth, "
        "connectors.snowflake.doctor; "
        "assert 'snowflake.connector' not in sys.modules, 'driver imported eagerly'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
