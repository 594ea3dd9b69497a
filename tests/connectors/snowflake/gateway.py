"""Test login gateway: checks key-pair JWTs like Snowflake, then hands over to fakesnow's server.

A Starlette app in front of `fakesnow.server.app`. On `POST /session/v1/login-request` it verifies
the JWT the connector sends (`data.TOKEN`, authenticator SNOWFLAKE_JWT): RS256 signature (PyJWT)
against the public keys registered for the user in two slots (like `RSA_PUBLIC_KEY` and
`RSA_PUBLIC_KEY_2`), issuer `ACCOUNT.USER.SHA256:<fingerprint of the key that verified>` and
subject `ACCOUNT.USER`. A failed check is answered as Snowflake does (HTTP 200, `success: false`,
code 390144, "JWT token is invalid. [...]"). Every other request goes to fakesnow unchanged.

The account and fingerprint rules are written here again on purpose (not imported from the code
under test), following Snowflake's documentation.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import fakesnow.server
import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from tests.connectors.snowflake import strict
from tests.connectors.snowflake.strict import StrictRules

SLOTS = (1, 2)  # 1 is RSA_PUBLIC_KEY, 2 is RSA_PUBLIC_KEY_2


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginAttempt:
    """What the gateway decided for one login request (for tests to inspect)."""

    account: str
    user: str
    accepted: bool
    reason: str
    slot: int | None


def fingerprint_of_public_pem(pem: str | bytes) -> str:
    """`SHA256:` + base64(sha256(DER SubjectPublicKeyInfo)) of a PEM public key."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    public = serialization.load_pem_public_key(data)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


def _account_for_jwt(account: str) -> str:
    # Snowflake's documented rule: the account identifier without region/cloud parts, uppercase.
    return account.split(".")[0].upper()


class KeyRegistry:
    """Public keys registered per user (uppercase name) in two slots; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, dict[int, str]] = {}
        self.attempts: list[LoginAttempt] = []

    def register_public_key(self, user: str, slot: int, pem: str | bytes) -> str:
        """Like `ALTER USER u SET RSA_PUBLIC_KEY[_2]=…`; returns the key's fingerprint."""
        if slot not in SLOTS:
            raise ValueError(f"slot must be 1 or 2, not {slot}")
        text = pem.decode("ascii") if isinstance(pem, bytes) else pem
        fingerprint = fingerprint_of_public_pem(text)
        with self._lock:
            self._keys.setdefault(user.upper(), {})[slot] = text
        return fingerprint

    def unset_public_key(self, user: str, slot: int) -> None:
        """Like `ALTER USER u UNSET RSA_PUBLIC_KEY[_2]`."""
        with self._lock:
            self._keys.get(user.upper(), {}).pop(slot, None)

    def keys_for(self, user: str) -> dict[int, str]:
        with self._lock:
            return dict(self._keys.get(user.upper(), {}))

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self.attempts.clear()

    def record(self, attempt: LoginAttempt) -> None:
        with self._lock:
            self.attempts.append(attempt)


def check_jwt(registry: KeyRegistry, account: str, user: str, token: str) -> tuple[int | None, str]:
    """The slot whose key verified the token (None when refused) and the reason."""
    keys = registry.keys_for(user)
    if not keys:
        return None, "no public key registered for the user"
    subject = f"{_account_for_jwt(account)}.{user.upper()}"
    reason = "signature does not verify with any registered key"
    for slot, pem in sorted(keys.items()):
        try:
            claims = jwt.decode(
                token,
                pem,
                algorithms=["RS256"],
                options={"require": ["iss", "sub", "iat", "exp"]},
                leeway=5,
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            return None, f"invalid token: {type(exc).__name__}"
        expected_issuer = f"{subject}.{fingerprint_of_public_pem(pem)}"
        if claims["iss"] != expected_issuer:
            return None, f"issuer {claims['iss']!r} is not {expected_issuer!r}"
        if claims["sub"] != subject:
            return None, f"subject {claims['sub']!r} is not {subject!r}"
        return slot, "ok"
    return None, reason


def _jwt_invalid() -> JSONResponse:
    return JSONResponse(
        {
            "data": None,
            "code": "390144",
            "message": f"JWT token is invalid. [{uuid.uuid4()}]",
            "success": False,
            "headers": None,
        }
    )


def build_app(registry: KeyRegistry, rules: StrictRules | None = None) -> Starlette:
    """The gateway app: the JWT-checking login route, the stricter stand-in's query and upload
    routes (`strict.py`), then all of fakesnow's routes."""
    rules = rules if rules is not None else StrictRules()

    async def login_request(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        data = json.loads(body).get("data") or {}
        account = str(data.get("ACCOUNT_NAME") or "")
        user = str(data.get("LOGIN_NAME") or "")
        if data.get("AUTHENTICATOR") != "SNOWFLAKE_JWT" or not data.get("TOKEN"):
            registry.record(
                LoginAttempt(
                    account=account, user=user, accepted=False, reason="not a JWT login", slot=None
                )
            )
            return JSONResponse(
                {
                    "data": None,
                    "code": "390100",
                    "message": "Incorrect username or password was specified.",
                    "success": False,
                    "headers": None,
                }
            )
        slot, reason = check_jwt(registry, account, user, str(data["TOKEN"]))
        registry.record(
            LoginAttempt(
                account=account, user=user, accepted=slot is not None, reason=reason, slot=slot
            )
        )
        if slot is None:
            return _jwt_invalid()
        # Starlette keeps the body read above on the request, so fakesnow reads it again.
        response = await fakesnow.server.login_request(request)
        strict.after_login(rules, json.loads(body), response)
        return response

    return Starlette(
        routes=[
            Route("/session/v1/login-request", login_request, methods=["POST"]),
            # The local server's query endpoint (fakesnow's, plus `REMOVE @stage/path`) behind
            # the stricter stand-in.
            Route("/queries/v1/query-request", strict.query_handler(rules), methods=["POST"]),
            Route("/fs_bucket/{path:path}", strict.bucket_handler(rules), methods=["PUT"]),
            Mount("/", app=fakesnow.server.app),
        ]
    )


def _free_port(host: str) -> int:
    with contextlib.closing(socket.socket(type=socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LoginGateway:
    """The gateway served by uvicorn in a background thread on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port(self.host)
        self.registry = KeyRegistry()
        self.rules = StrictRules()
        config = uvicorn.Config(
            build_app(self.registry, self.rules),
            host=self.host,
            port=self.port,
            log_level="warning",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, name="snowflake login gateway", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LoginGateway:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Snowflake login gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def register_public_key(self, user: str, slot: int, pem: str | bytes) -> str:
        return self.registry.register_public_key(user, slot, pem)

    def unset_public_key(self, user: str, slot: int) -> None:
        self.registry.unset_public_key(user, slot)

    @property
    def attempts(self) -> list[LoginAttempt]:
        return list(self.registry.attempts)
