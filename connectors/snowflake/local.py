"""A local Snowflake stand-in for notebooks and trials: fakesnow over HTTP, on loopback only.

`start_local_server()` serves fakesnow's Snowflake-compatible REST API in a background thread on
127.0.0.1 and a free port. With `key_pair_gateway=True` (the default) a small gateway in front of
it checks the key-pair JWT of every login like Snowflake does — RS256 signature against the
public keys registered for the user (two slots, like `RSA_PUBLIC_KEY` / `RSA_PUBLIC_KEY_2`),
issuer `ACCOUNT.USER.SHA256:<fingerprint>` and subject `ACCOUNT.USER` — and refuses anything else
with Snowflake's "JWT token is invalid" answer. So `connectors.snowflake.auth.connect` runs the
real `snowflake-connector-python` and the real key-pair login against it.

This is for trying an export offline (the export notebook, a laptop): in production, point the
credentials (`connections.toml` or `SNOWFLAKE_*` variables) at your account instead. Everything
lives in memory and is gone when the server stops. Needs the `snowflake` extra (fakesnow[server]).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import importlib
import json
import logging
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.snowflake.auth import SESSION_PARAMETERS as SESSION_PARAMETERS  # for notebooks
from connectors.snowflake.config import Secret, SnowflakeCredentials
from connectors.snowflake.keys import jwt_issuer, jwt_subject, public_key_fingerprint

LOOPBACK = ("127.0.0.1", "::1", "localhost")
DEFAULT_ACCOUNT = "local-test"
DEFAULT_DATABASE = "PRICING_LAB"
DEFAULT_SCHEMA = "PUBLIC"
SLOTS = (1, 2)  # RSA_PUBLIC_KEY, RSA_PUBLIC_KEY_2
JWT_LEEWAY_SECONDS = 5
_START_TIMEOUT_SECONDS = 20.0


@dataclass
class _Registry:
    """Public keys per (uppercase) user and slot; shared with the server thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: dict[str, dict[int, rsa.RSAPublicKey]] = field(default_factory=dict)
    refused: int = 0

    def keys_for(self, user: str) -> dict[int, rsa.RSAPublicKey]:
        with self.lock:
            return dict(self.keys.get(user.upper(), {}))


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(registry: _Registry, account: str, user: str, token: str) -> bool:
    """True when `token` is an RS256 JWT signed by a key registered for `user`, with the issuer
    and subject Snowflake expects and not expired."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_b64url(header_b64))
        claims = json.loads(_b64url(payload_b64))
        signature = _b64url(signature_b64)
    except (ValueError, json.JSONDecodeError):
        return False
    if header.get("alg") != "RS256" or not isinstance(claims, dict):
        return False
    now = datetime.now(UTC).timestamp()
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or expires + JWT_LEEWAY_SECONDS < now:
        return False
    signed = f"{header_b64}.{payload_b64}".encode("ascii")
    for public_key in registry.keys_for(user).values():
        try:
            public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        fingerprint = public_key_fingerprint(public_key)
        return claims.get("iss") == jwt_issuer(account, user, fingerprint) and claims.get(
            "sub"
        ) == jwt_subject(account, user)
    return False


def _free_port(host: str) -> int:
    with contextlib.closing(socket.socket(type=socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_REMOVE = re.compile(r"^\s*(?:REMOVE|RM)\s+@(?P<stage>[^/\s]+)(?:/(?P<path>\S*))?\s*;?\s*$", re.I)


async def _body_json(request: Any) -> dict[str, Any]:
    body = await request.body()
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    result: dict[str, Any] = json.loads(body)
    return result


def with_body(request: Any, payload: dict[str, Any]) -> Any:
    """A copy of a Starlette request whose (uncompressed JSON) body is `payload`."""
    from starlette.requests import Request

    body = json.dumps(payload).encode()
    headers = [
        (k, v)
        for k, v in request.scope["headers"]
        if k not in (b"content-encoding", b"content-length")
    ]
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({**request.scope, "headers": headers}, receive)


def _remove_files(fakesnow_server: Any, request: Any, stage_name: str, path: str) -> list[str]:
    """Delete the internal stage's files under `path`; their names as LIST shows them."""
    stage: Any = importlib.import_module("fakesnow.transforms.stage")
    connection = fakesnow_server.to_conn(fakesnow_server.to_token(request))
    catalog, schema, name = stage.parts_from_var(stage_name, connection.database, connection.schema)
    root = Path(stage.internal_dir(f"{catalog}.{schema}.{name}"))
    target = Path(stage.internal_dir(f"{catalog}.{schema}.{name}", path))
    removed = []
    if target.is_file():
        files = [target]
    else:
        files = sorted(f for f in target.rglob("*") if f.is_file()) if target.is_dir() else []
    for file in files:
        file.unlink()
        removed.append(f"{name.lower()}/{file.relative_to(root)}")
    return removed


async def query_request(request: Any) -> Any:
    """fakesnow's query endpoint plus `REMOVE @stage/path`, which fakesnow 0.12 cannot parse:
    the files are deleted here and the answer is Snowflake's (one row per file removed)."""
    fakesnow_server: Any = importlib.import_module("fakesnow.server")
    payload = await _body_json(request)
    match = _REMOVE.match(str(payload.get("sqlText") or ""))
    if match is None:
        return await fakesnow_server.query_request(with_body(request, payload))
    removed = _remove_files(fakesnow_server, request, match["stage"], match["path"] or "")
    rows = " UNION ALL ".join(
        f"SELECT '{name}' AS \"name\", 'removed' AS \"result\"" for name in removed
    )
    payload["sqlText"] = rows or 'SELECT NULL AS "name", NULL AS "result" WHERE 1 = 0'
    return await fakesnow_server.query_request(with_body(request, payload))


def _build_app(registry: _Registry | None) -> Any:
    # By module path: `fakesnow.server` is also the name of a function in fakesnow's package.
    fakesnow_server: Any = importlib.import_module("fakesnow.server")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route

    logging.getLogger("fakesnow.server").setLevel(logging.WARNING)
    queries = Route("/queries/v1/query-request", query_request, methods=["POST"])
    if registry is None:
        return Starlette(routes=[queries, Mount("/", app=fakesnow_server.app)])

    async def login_request(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        data = json.loads(body).get("data") or {}
        account = str(data.get("ACCOUNT_NAME") or "")
        user = str(data.get("LOGIN_NAME") or "")
        token = str(data.get("TOKEN") or "")
        if data.get("AUTHENTICATOR") != "SNOWFLAKE_JWT" or not verify_jwt(
            registry, account, user, token
        ):
            with registry.lock:
                registry.refused += 1
            return JSONResponse(
                {
                    "data": None,
                    "code": "390144",
                    "message": f"JWT token is invalid. [{uuid.uuid4()}]",
                    "success": False,
                    "headers": None,
                }
            )
        # Starlette keeps the body read above on the request, so fakesnow reads it again.
        return await fakesnow_server.login_request(request)

    return Starlette(
        routes=[
            Route("/session/v1/login-request", login_request, methods=["POST"]),
            queries,
            Mount("/", app=fakesnow_server.app),
        ]
    )


class LocalSnowflake:
    """A running local server: where it listens, credentials for it, key registration, stop."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: _Registry | None,
        server: Any,
        thread: threading.Thread,
        account: str,
        database: str,
        schema: str,
    ) -> None:
        self.host = host
        self.port = port
        self.account = account
        self.database = database
        self.schema = schema
        self._registry = registry
        self._server = server
        self._thread = thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def checks_key_pairs(self) -> bool:
        """True when logins go through the JWT-checking gateway."""
        return self._registry is not None

    @property
    def refused_logins(self) -> int:
        """How many logins the gateway refused so far."""
        return 0 if self._registry is None else self._registry.refused

    def __repr__(self) -> str:
        gateway = "key-pair gateway" if self.checks_key_pairs else "no login checks"
        return f"<LocalSnowflake {self.url} account={self.account} ({gateway})>"

    def register_public_key(self, user: str, public_key_pem: str | bytes, *, slot: int = 1) -> str:
        """Like `ALTER USER user SET RSA_PUBLIC_KEY[_2]='…'`; returns the key's fingerprint."""
        if slot not in SLOTS:
            raise ValueError(f"slot must be 1 or 2, not {slot}")
        data = public_key_pem.encode("ascii") if isinstance(public_key_pem, str) else public_key_pem
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("Snowflake key-pair authentication needs an RSA public key")
        if self._registry is not None:
            with self._registry.lock:
                self._registry.keys.setdefault(user.upper(), {})[slot] = key
        return public_key_fingerprint(key)

    def credentials(
        self,
        *,
        user: str,
        private_key_file: str | Path | None = None,
        private_key: str | bytes | None = None,
        passphrase: str | None = None,
        schema: str | None = None,
    ) -> SnowflakeCredentials:
        """Credentials that reach this server over HTTP with the given private key."""
        return SnowflakeCredentials(
            account=self.account,
            user=user,
            private_key_file=Path(private_key_file) if private_key_file is not None else None,
            private_key=Secret(private_key) if private_key is not None else None,
            private_key_passphrase=Secret(passphrase) if passphrase is not None else None,
            database=self.database,
            schema=schema or self.schema,
            host=self.host,
            port=self.port,
            protocol="http",
        )

    def stop(self) -> None:
        """Stop the server thread (its in-memory data is gone)."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> LocalSnowflake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_local_server(
    *,
    key_pair_gateway: bool = True,
    host: str = "127.0.0.1",
    port: int | None = None,
    account: str = DEFAULT_ACCOUNT,
    database: str = DEFAULT_DATABASE,
    schema: str = DEFAULT_SCHEMA,
) -> LocalSnowflake:
    """Start fakesnow's server (behind the key-pair gateway by default) on a loopback address.

    Returns once the server accepts connections. Stop it with `stop()` or use it as a context
    manager. Connect with `connectors.snowflake.auth.connect(server.credentials(...),
    session_parameters=SESSION_PARAMETERS)`.
    """
    if host not in LOOPBACK:
        raise ValueError(f"the local server listens on loopback only (127.0.0.1, ::1), not {host}")
    import uvicorn

    registry = _Registry() if key_pair_gateway else None
    chosen_port = port or _free_port(host)
    config = uvicorn.Config(
        _build_app(registry), host=host, port=chosen_port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="local snowflake server", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the local Snowflake server did not start on {host}:{chosen_port}")
        time.sleep(0.02)
    return LocalSnowflake(
        host=host,
        port=chosen_port,
        registry=registry,
        server=server,
        thread=thread,
        account=account,
        database=database,
        schema=schema,
    )
