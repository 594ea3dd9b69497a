"""RSA key material for Snowflake key-pair auth: loading, fingerprints, generation, JWT naming.

Private keys are read in PKCS#8 PEM (encrypted or not), PKCS#1 PEM, DER (PKCS#8, encrypted
PKCS#8 or PKCS#1) and base64 of any of those. Each failure raises its own `KeyLoadError`
subclass naming the source and the formats tried; no message or `repr` contains key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from connectors.snowflake.errors import (
    BadBase64Error,
    KeyFileError,
    KeyLoadError,
    PassphraseMissingError,
    PublicKeyGivenError,
    UnsupportedKeyTypeError,
    WrongPassphraseError,
)

PRIVATE_KEY_FORMATS = (
    "PKCS#8 PEM",
    "encrypted PKCS#8 PEM",
    "PKCS#1 PEM",
    "PKCS#8 DER",
    "encrypted PKCS#8 DER",
    "PKCS#1 DER",
    "base64 of any of these",
)
PUBLIC_KEY_FORMATS = (
    "SubjectPublicKeyInfo PEM (PUBLIC KEY)",
    "PKCS#1 PEM (RSA PUBLIC KEY)",
    "DER of either",
    "OpenSSH (ssh-rsa)",
    "base64 of the DER",
    *PRIVATE_KEY_FORMATS,
)
DEFAULT_KEY_BITS = 2048
# Snowflake rejects RSA keys shorter than this.
MINIMUM_KEY_BITS = 2048

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_PUBLIC_PEM_LABELS = {"PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE", "SSH2 PUBLIC KEY"}
_SSH_PUBLIC_PREFIXES = (b"ssh-", b"ecdsa-sha2-", b"sk-")
_DER_SEQUENCE, _DER_INTEGER, _DER_BIT_STRING, _DER_OCTET_STRING = 0x30, 0x02, 0x03, 0x04

Passphrase = bytes | str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedPrivateKey:
    """An RSA private key ready for the driver, with facts about it (never the key itself)."""

    key: rsa.RSAPrivateKey = field(repr=False, compare=False)
    key_format: str
    source: str
    encrypted: bool
    passphrase_ignored: bool
    bits: int
    fingerprint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedPublicKey:
    """An RSA public key, read from a public key or derived from a private one."""

    key: rsa.RSAPublicKey = field(repr=False, compare=False)
    key_format: str
    source: str
    from_private_key: bool
    bits: int
    fingerprint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedKeyPair:
    """A new key pair: the encrypted PKCS#8 PEM (hidden from `repr`) and its public half."""

    encrypted_private_pem: bytes = field(repr=False)
    public_pem: str
    public_key_body: str
    fingerprint: str
    bits: int


@dataclass(frozen=True, slots=True)
class _Container:
    kind: Literal["pem", "der", "ssh"]
    data: bytes
    label: str
    via_base64: bool


def _passphrase_bytes(passphrase: Passphrase) -> bytes | None:
    if passphrase is None:
        return None
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)


def _der_length(der: bytes, pos: int) -> tuple[int | None, int]:
    if pos >= len(der):
        return None, pos
    first = der[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > 4 or pos + count > len(der):
        return None, pos
    return int.from_bytes(der[pos : pos + count], "big"), pos + count


def _der_child_tags(der: bytes, limit: int = 2) -> list[int]:
    """Tags of the first children of an outer DER SEQUENCE ([] when it is not one)."""
    if len(der) < 2 or der[0] != _DER_SEQUENCE:
        return []
    length, pos = _der_length(der, 1)
    if length is None or pos + length != len(der):
        return []
    tags: list[int] = []
    while pos < len(der) and len(tags) < limit:
        tag = der[pos]
        child_length, pos = _der_length(der, pos + 1)
        if child_length is None:
            break
        tags.append(tag)
        pos += child_length
    return tags


def _der_format(der: bytes) -> str:
    tags = _der_child_tags(der)
    if tags == [_DER_INTEGER, _DER_SEQUENCE]:
        return "PKCS#8 DER"
    if tags == [_DER_SEQUENCE, _DER_OCTET_STRING]:
        return "encrypted PKCS#8 DER"
    if tags == [_DER_SEQUENCE, _DER_BIT_STRING]:
        return "SubjectPublicKeyInfo DER"
    if tags == [_DER_INTEGER, _DER_INTEGER]:
        return "PKCS#1 DER"
    return "DER"


def _looks_like_der(data: bytes) -> bool:
    return bool(_der_child_tags(data))


def _unwrap(raw: bytes, *, source: str, formats: tuple[str, ...]) -> _Container:
    """Find what the bytes are: a PEM block, DER, an OpenSSH public key, or base64 of those."""
    # Binary DER may begin or end with whitespace bytes: check it before stripping text.
    data = raw if _looks_like_der(raw) else raw.strip()
    if not data:
        raise KeyLoadError("is empty", source=source, formats_tried=formats)
    for via_base64 in (False, True):
        if b"-----BEGIN " in data:
            blocks = [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
            if not blocks:
                raise KeyLoadError(
                    "has a PEM header but no complete PEM block (BEGIN/END lines do not match)",
                    source=source,
                    formats_tried=formats,
                )
            private = [b for b in blocks if b[0].endswith("PRIVATE KEY")]
            label, block = (private or blocks)[0]
            return _Container(kind="pem", data=block, label=label, via_base64=via_base64)
        if data.startswith(_SSH_PUBLIC_PREFIXES):
            return _Container(kind="ssh", data=data, label="OpenSSH", via_base64=via_base64)
        if _looks_like_der(data):
            return _Container(kind="der", data=data, label=_der_format(data), via_base64=via_base64)
        if via_base64:
            break
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise KeyLoadError(
                "is binary but not DER, and is not PEM or base64 text",
                source=source,
                formats_tried=formats,
            ) from None
        compact = "".join(text.split())
        compact += "=" * (-len(compact) % 4)
        try:
            data = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise BadBase64Error(
                "is not PEM or DER, and is not valid base64 either (check for a truncated "
                "or mangled value, e.g. quotes or a line break lost when it was copied)",
                source=source,
                formats_tried=formats,
            ) from None
    raise BadBase64Error(
        "decodes from base64, but the result is neither PEM nor DER",
        source=source,
        formats_tried=formats,
    )


def _key_type_name(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"an EC key ({key.curve.name})"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "an Ed25519 key"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "an Ed448 key"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return "a DSA key"
    return f"a {type(key).__name__.lstrip('_')} key"


def _unsupported_type(key: object, *, source: str, formats: tuple[str, ...]) -> KeyLoadError:
    return UnsupportedKeyTypeError(
        f"is {_key_type_name(key)}; Snowflake key-pair authentication here needs an RSA key "
        f"(at least {MINIMUM_KEY_BITS} bits)",
        source=source,
        formats_tried=formats,
    )


def _public_given(what: str, *, source: str) -> PublicKeyGivenError:
    return PublicKeyGivenError(
        f"is {what}, but a private key is needed here (give the private key file, e.g. "
        "rsa_key.p8; the public key is what you register on the Snowflake user)",
        source=source,
        formats_tried=PRIVATE_KEY_FORMATS,
    )


def _private_format(container: _Container) -> tuple[str, bool]:
    """The format name of a private-key container and whether it is encrypted."""
    if container.kind == "der":
        name = container.label
        encrypted = name == "encrypted PKCS#8 DER"
    elif container.label == "ENCRYPTED PRIVATE KEY":
        name, encrypted = "encrypted PKCS#8 PEM", True
    elif container.label == "PRIVATE KEY":
        name, encrypted = "PKCS#8 PEM", False
    elif container.label == "RSA PRIVATE KEY":
        encrypted = b"Proc-Type: 4,ENCRYPTED" in container.data
        name = "encrypted PKCS#1 PEM" if encrypted else "PKCS#1 PEM"
    else:
        name, encrypted = f"PEM ({container.label})", False
    return (f"base64 of {name}" if container.via_base64 else name), encrypted


def _load_private(
    container: _Container, password: bytes | None, *, source: str
) -> tuple[object, str, bool]:
    formats = PRIVATE_KEY_FORMATS
    key_format, encrypted = _private_format(container)
    if container.kind == "ssh" or container.label in _PUBLIC_PEM_LABELS:
        if container.kind == "ssh":
            what = "an OpenSSH public key"
        elif container.label == "CERTIFICATE":
            what = "an X.509 certificate"
        else:
            what = f"a public key ({container.label} PEM)"
        raise _public_given(what, source=source)
    if container.label == "OPENSSH PRIVATE KEY":
        raise UnsupportedKeyTypeError(
            "is an OpenSSH-format private key, which Snowflake tools do not read; convert it "
            "with `ssh-keygen -p -m PKCS8 -f FILE` or create a new one with "
            "`pricing-lab keys generate`",
            source=source,
            formats_tried=formats,
        )
    if container.kind == "pem" and not container.label.endswith("PRIVATE KEY"):
        raise KeyLoadError(
            f"holds a PEM block '{container.label}', which is not a private key",
            source=source,
            formats_tried=formats,
        )
    if container.kind == "der" and container.label == "SubjectPublicKeyInfo DER":
        raise _public_given("a public key (SubjectPublicKeyInfo DER)", source=source)
    if encrypted and password is None:
        raise PassphraseMissingError(
            f"is an {key_format} key and no passphrase was given (set "
            "SNOWFLAKE_PRIVATE_KEY_FILE_PWD, or private_key_file_pwd in connections.toml)",
            source=source,
            formats_tried=formats,
        )
    load = (
        serialization.load_pem_private_key
        if container.kind == "pem"
        else serialization.load_der_private_key
    )
    try:
        key = load(container.data, password=password if encrypted else None)
    except UnsupportedAlgorithm:
        raise KeyLoadError(
            f"is an {key_format} key encrypted with an algorithm this system cannot decrypt",
            source=source,
            formats_tried=formats,
        ) from None
    except (ValueError, TypeError):
        if encrypted:
            raise WrongPassphraseError(
                f"the passphrase does not decrypt this {key_format} key (wrong passphrase, or "
                "the key file is damaged)",
                source=source,
                formats_tried=formats,
            ) from None
        if container.kind == "der" and _loads_as_public_der(container.data):
            raise _public_given("a public key (PKCS#1 DER)", source=source) from None
        raise KeyLoadError(
            f"looks like {key_format} but cannot be parsed as a private key (damaged or "
            "truncated?)",
            source=source,
            formats_tried=formats,
        ) from None
    return key, key_format, encrypted


def _loads_as_public_der(data: bytes) -> bool:
    try:
        serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def load_private_key(
    data: bytes | str, *, passphrase: Passphrase = None, source: str
) -> LoadedPrivateKey:
    """Load an RSA private key from PEM, DER or base64 bytes/text.

    `source` says where the data came from (e.g. "file /home/me/rsa_key.p8" or "environment
    variable SNOWFLAKE_PRIVATE_KEY") and starts every error message. A passphrase given for a key
    that is not encrypted is ignored (`passphrase_ignored` is then true).
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    password = _passphrase_bytes(passphrase)
    container = _unwrap(raw, source=source, formats=PRIVATE_KEY_FORMATS)
    key, key_format, encrypted = _load_private(container, password, source=source)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _unsupported_type(key, source=source, formats=PRIVATE_KEY_FORMATS)
    return LoadedPrivateKey(
        key=key,
        key_format=key_format,
        source=source,
        encrypted=encrypted,
        passphrase_ignored=password is not None and not encrypted,
        bits=key.key_size,
        fingerprint=public_key_fingerprint(key),
    )


def read_key_file(path: str | Path) -> bytes:
    """The bytes of a key file; a missing or unreadable file is a `KeyFileError` naming the path."""
    file = Path(path).expanduser()
    source = f"key file {file}"
    if not file.exists():
        raise KeyFileError("does not exist", source=source)
    if file.is_dir():
        raise KeyFileError("is a directory, not a key file", source=source)
    try:
        return file.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot be read ({exc.strerror})", source=source) from None


def load_private_key_file(path: str | Path, *, passphrase: Passphrase = None) -> LoadedPrivateKey:
    """Load an RSA private key from a file (any format `load_private_key` reads)."""
    file = Path(path).expanduser()
    return load_private_key(read_key_file(file), passphrase=passphrase, source=f"key file {file}")


def load_public_key(
    data: bytes | str, *, passphrase: Passphrase = None, source: str
) -> LoadedPublicKey:
    """Load an RSA public key, or derive it from a private key (which may need `passphrase`)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    container = _unwrap(raw, source=source, formats=PUBLIC_KEY_FORMATS)
    prefix = "base64 of " if container.via_base64 else ""
    public: object
    try:
        if container.kind == "ssh":
            public = serialization.load_ssh_public_key(container.data)
            key_format = "OpenSSH public key"
        elif container.kind == "pem" and container.label in {"PUBLIC KEY", "RSA PUBLIC KEY"}:
            public = serialization.load_pem_public_key(container.data)
            key_format = f"{prefix}{container.label} PEM"
        elif container.kind == "der" and _loads_as_public_der(container.data):
            public = serialization.load_der_public_key(container.data)
            key_format = f"{prefix}{container.label}"
        else:
            private = load_private_key(raw, passphrase=passphrase, source=source)
            return LoadedPublicKey(
                key=private.key.public_key(),
                key_format=private.key_format,
                source=source,
                from_private_key=True,
                bits=private.bits,
                fingerprint=private.fingerprint,
            )
    except (ValueError, UnsupportedAlgorithm):
        raise KeyLoadError(
            f"looks like a {container.label} public key but cannot be parsed (damaged?)",
            source=source,
            formats_tried=PUBLIC_KEY_FORMATS,
        ) from None
    if not isinstance(public, rsa.RSAPublicKey):
        raise _unsupported_type(public, source=source, formats=PUBLIC_KEY_FORMATS)
    return LoadedPublicKey(
        key=public,
        key_format=key_format,
        source=source,
        from_private_key=False,
        bits=public.key_size,
        fingerprint=public_key_fingerprint(public),
    )


def load_public_key_file(path: str | Path, *, passphrase: Passphrase = None) -> LoadedPublicKey:
    """Load an RSA public key from a public- or private-key file."""
    file = Path(path).expanduser()
    return load_public_key(read_key_file(file), passphrase=passphrase, source=f"key file {file}")


def _public_der(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_fingerprint(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """`SHA256:` + base64(sha256(DER SubjectPublicKeyInfo)): Snowflake's `RSA_PUBLIC_KEY_FP`."""
    digest = hashlib.sha256(_public_der(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii")


def public_key_body(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """The public key as one base64 line (DER SubjectPublicKeyInfo), as `ALTER USER` takes it."""
    return base64.b64encode(_public_der(key)).decode("ascii")


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """The public key as a `-----BEGIN PUBLIC KEY-----` PEM text."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def generate_key_pair(passphrase: bytes | str, *, bits: int = DEFAULT_KEY_BITS) -> GeneratedKeyPair:
    """A new RSA key pair; the private key as encrypted PKCS#8 PEM under `passphrase`."""
    password = _passphrase_bytes(passphrase)
    if not password:
        raise ValueError("an encrypted key needs a non-empty passphrase")
    if bits < MINIMUM_KEY_BITS:
        raise ValueError(f"Snowflake needs RSA keys of at least {MINIMUM_KEY_BITS} bits")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    return GeneratedKeyPair(
        encrypted_private_pem=encrypted,
        public_pem=public_key_pem(key),
        public_key_body=public_key_body(key),
        fingerprint=public_key_fingerprint(key),
        bits=bits,
    )


def normalise_account(account: str) -> str:
    """The account as the connector puts it in the JWT: region/URL parts cut off, uppercase.

    Mirrors `snowflake.connector` 4.x: `parse_account` keeps the part before the first '.' (for
    `name-ext.global` it also drops the last '-' segment), then `AuthByKeyPair.prepare` cuts at
    the first '.' again (or the first '-' when '.global' is still there) and uppercases.
    """
    value = account.strip()
    parts = value.split(".")
    if len(parts) > 1:
        value = parts[0][: parts[0].rfind("-")] if parts[1] == "global" else parts[0]
    value = value.partition("-")[0] if ".global" in value else value.partition(".")[0]
    return value.upper()


def normalise_user(user: str) -> str:
    """The user as the connector puts it in the JWT: uppercase."""
    return user.upper()


def jwt_subject(account: str, user: str) -> str:
    """The JWT `sub` claim: `ACCOUNT.USER`, both normalised."""
    return f"{normalise_account(account)}.{normalise_user(user)}"


def jwt_issuer(account: str, user: str, fingerprint: str) -> str:
    """The JWT `iss` claim Snowflake checks: `ACCOUNT.USER.SHA256:…`."""
    return f"{jwt_subject(account, user)}.{fingerprint}"


def sql_identifier(name: str) -> str:
    """A user name as a Snowflake identifier: bare when it is a plain one, else double-quoted."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'
