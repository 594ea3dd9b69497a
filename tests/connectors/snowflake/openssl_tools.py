"""The openssl command line as the independent reference for fingerprints and public keys."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from tests.connectors.snowflake.conftest import PASSPHRASE


def _run(args: list[str], data: bytes) -> bytes:
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def openssl_fingerprint(public_pem: bytes | str) -> str:
    """SPEC §7's recipe: openssl rsa -pubin -outform DER | openssl dgst -sha256 -binary | base64."""
    pem = public_pem.encode() if isinstance(public_pem, str) else public_pem
    der = _run(["openssl", "rsa", "-pubin", "-outform", "DER"], pem)
    digest = _run(["openssl", "dgst", "-sha256", "-binary"], der)
    return "SHA256:" + _run(["openssl", "enc", "-base64"], digest).decode().strip()


def openssl_public_body(public_pem: bytes | str) -> str:
    """The public key's DER SubjectPublicKeyInfo in base64, as ALTER USER … SET RSA_PUBLIC_KEY."""
    pem = public_pem.encode() if isinstance(public_pem, str) else public_pem
    return base64.b64encode(_run(["openssl", "rsa", "-pubin", "-outform", "DER"], pem)).decode()


def openssl_public_pem(key_file: Path) -> bytes:
    """The public key in a key file as PEM, extracted by openssl (passphrase via environment)."""
    if key_file.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----"):
        return key_file.read_bytes()
    args = ["openssl", "pkey", "-in", str(key_file), "-pubout", "-passin", "env:PL_TEST_PASS"]
    if key_file.suffix == ".der":
        args += ["-inform", "DER"]
    env = {**os.environ, "PL_TEST_PASS": PASSPHRASE}
    return subprocess.run(args, capture_output=True, check=True, env=env).stdout
