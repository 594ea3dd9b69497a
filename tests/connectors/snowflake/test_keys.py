"""Key loading in every format, each failure named, fingerprints equal to openssl's, JWT naming."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from connectors.snowflake.errors import (
    BadBase64Error,
    KeyFileError,
    PassphraseMissingError,
    PublicKeyGivenError,
    UnsupportedKeyTypeError,
    WrongPassphraseError,
)
from connectors.snowflake.keys import (
    generate_key_pair,
    jwt_issuer,
    jwt_subject,
    load_private_key,
    load_private_key_file,
    load_public_key_file,
    normalise_account,
    public_key_body,
)
from tests.connectors.snowflake.conftest import PASSPHRASE, KeyFiles
from tests.connectors.snowflake.openssl_tools import (
    openssl_fingerprint,
    openssl_public_body,
    openssl_public_pem,
)

PRIVATE_FORMATS = {
    "pkcs8.pem": ("PKCS#8 PEM", False),
    "pkcs8_encrypted.pem": ("encrypted PKCS#8 PEM", True),
    "pkcs1.pem": ("PKCS#1 PEM", False),
    "pkcs8.der": ("PKCS#8 DER", False),
    "pkcs8_encrypted.der": ("encrypted PKCS#8 DER", True),
    "pkcs1.der": ("PKCS#1 DER", False),
}


@pytest.mark.parametrize("file_name", sorted(PRIVATE_FORMATS))
def test_each_private_key_format_loads(rsa_keys: dict[str, KeyFiles], file_name: str) -> None:
    key = rsa_keys["a"]
    expected_format, encrypted = PRIVATE_FORMATS[file_name]
    passphrase = PASSPHRASE if encrypted else None
    loaded = load_private_key_file(key.path(file_name), passphrase=passphrase)
    assert loaded.key_format == expected_format
    assert loaded.encrypted is encrypted
    assert loaded.bits == 2048
    assert loaded.fingerprint == openssl_fingerprint(key.public_pem.encode())


@pytest.mark.parametrize("file_name", sorted(PRIVATE_FORMATS))
def test_base64_of_each_format_loads(rsa_keys: dict[str, KeyFiles], file_name: str) -> None:
    key = rsa_keys["b"]
    expected_format, encrypted = PRIVATE_FORMATS[file_name]
    text = base64.b64encode(key.path(file_name).read_bytes()).decode()
    # as an environment variable would hold it, with line breaks every 76 characters
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    loaded = load_private_key(
        wrapped, passphrase=PASSPHRASE if encrypted else None, source="environment variable X"
    )
    assert loaded.key_format == f"base64 of {expected_format}"
    assert loaded.fingerprint == openssl_fingerprint(key.public_pem.encode())


def test_der_ending_in_a_whitespace_byte_loads() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for _ in range(2000):  # encryption is salted: about 1 in 40 ends in a whitespace byte
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        )
        if der[-1:].isspace():
            break
    assert der[-1:].isspace()
    loaded = load_private_key(der, passphrase=PASSPHRASE, source="key file k.der")
    assert loaded.key_format == "encrypted PKCS#8 DER"


def test_passphrase_for_an_unencrypted_key_is_ignored_and_reported(
    rsa_keys: dict[str, KeyFiles],
) -> None:
    loaded = load_private_key_file(rsa_keys["a"].path("pkcs8.pem"), passphrase="unused")
    assert loaded.passphrase_ignored is True


def test_loaded_key_repr_shows_no_key(
    rsa_keys: dict[str, KeyFiles], assert_no_key_material: Callable[[str], None]
) -> None:
    loaded = load_private_key_file(rsa_keys["a"].path("pkcs8_encrypted.pem"), passphrase=PASSPHRASE)
    text = repr(loaded)
    assert "RSAPrivateKey" not in text and "key=" not in text.replace("key_format", "")
    assert_no_key_material(text)


def test_wrong_passphrase_is_named(
    rsa_keys: dict[str, KeyFiles], assert_no_key_material: Callable[[str], None]
) -> None:
    path = rsa_keys["a"].path("pkcs8_encrypted.pem")
    with pytest.raises(WrongPassphraseError) as caught:
        load_private_key_file(path, passphrase="not the passphrase")
    message = str(caught.value)
    assert message.startswith(f"key file {path}: the passphrase does not decrypt")
    assert "Formats tried: PKCS#8 PEM, encrypted PKCS#8 PEM, PKCS#1 PEM" in message
    assert "not the passphrase" not in message
    assert_no_key_material(message)


@pytest.mark.parametrize("file_name", ["pkcs8_encrypted.pem", "pkcs8_encrypted.der"])
def test_missing_passphrase_is_named(rsa_keys: dict[str, KeyFiles], file_name: str) -> None:
    with pytest.raises(PassphraseMissingError) as caught:
        load_private_key_file(rsa_keys["a"].path(file_name))
    assert "no passphrase was given" in str(caught.value)
    assert "SNOWFLAKE_PRIVATE_KEY_FILE_PWD" in str(caught.value)
    assert caught.value.exit_code == 2


def test_public_key_given_is_named(rsa_keys: dict[str, KeyFiles]) -> None:
    with pytest.raises(PublicKeyGivenError) as caught:
        load_private_key_file(rsa_keys["a"].path("public.pem"))
    assert "is a public key" in str(caught.value)
    assert "a private key is needed" in str(caught.value)
    public_der = serialization.load_pem_public_key(rsa_keys["a"].public_pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(PublicKeyGivenError):
        load_private_key(base64.b64encode(public_der), source="environment variable X")


def test_bad_base64_is_named() -> None:
    with pytest.raises(BadBase64Error) as caught:
        load_private_key("MIIEvQ*not base64*", source="environment variable SNOWFLAKE_PRIVATE_KEY")
    message = str(caught.value)
    assert message.startswith("environment variable SNOWFLAKE_PRIVATE_KEY: is not PEM or DER")
    assert "not valid base64" in message
    assert "Formats tried:" in message and "base64 of any of these" in message


@pytest.mark.parametrize(
    ("make_key", "named"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "an EC key (secp256r1)"),
        (ed25519.Ed25519PrivateKey.generate, "an Ed25519 key"),
    ],
)
def test_non_rsa_key_is_unsupported(make_key: Callable[[], object], named: str) -> None:
    key = make_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(UnsupportedKeyTypeError) as caught:
        load_private_key(pem, source="key file k.pem")
    assert f"is {named}" in str(caught.value)
    assert "needs an RSA key" in str(caught.value)


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as caught:
        load_private_key_file(tmp_path / "nope.p8")
    assert str(caught.value).startswith(f"key file {tmp_path / 'nope.p8'}: does not exist")


@pytest.mark.parametrize("file_name", ["public.pem", "pkcs8_encrypted.pem", "pkcs1.der"])
def test_fingerprint_of_any_key_equals_openssl(
    rsa_keys: dict[str, KeyFiles], file_name: str
) -> None:
    key = rsa_keys["c"]
    path = key.path(file_name)
    loaded = load_public_key_file(path, passphrase=PASSPHRASE)
    from_openssl = openssl_fingerprint(openssl_public_pem(path))
    assert loaded.fingerprint == from_openssl


def test_generated_pair_is_encrypted_pkcs8_and_matches_its_public_key() -> None:
    pair = generate_key_pair(PASSPHRASE)
    assert pair.encrypted_private_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert "encrypted_private_pem" not in repr(pair)
    private = serialization.load_pem_private_key(
        pair.encrypted_private_pem, password=PASSPHRASE.encode()
    )
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    assert pair.fingerprint == openssl_fingerprint(pair.public_pem.encode())
    assert pair.public_key_body == openssl_public_body(pair.public_pem)
    assert public_key_body(private) == pair.public_key_body


@pytest.mark.parametrize(
    ("account", "normalised"),
    [
        ("myorg-myaccount", "MYORG-MYACCOUNT"),
        ("xy12345", "XY12345"),
        ("xy12345.us-east-2.aws", "XY12345"),
        ("xy12345.eu-central-1", "XY12345"),
        ("myorg-myaccount-ext.global", "MYORG-MYACCOUNT"),
    ],
)
def test_account_normalised_as_the_connector_does(account: str, normalised: str) -> None:
    assert normalise_account(account) == normalised


def test_jwt_issuer_and_subject() -> None:
    assert jwt_subject("xy12345.us-east-2.aws", "Loader_1") == "XY12345.LOADER_1"
    assert jwt_issuer("myorg-acct", "etl", "SHA256:abc=") == "MYORG-ACCT.ETL.SHA256:abc="
