"""Sending an activity stream to an endpoint as signed JSON webhooks, in order, resumably.

`send_activity(events, url, secret=…, cursor=…)` posts each event of a replay's `activity.parquet`
(SPEC §6) in `activity_id` order, one request per event, and after each delivery records the
last delivered `activity_id` in the cursor file, so a run stopped anywhere resumes after it.
Every request carries an `Idempotency-Key` that is the same on every retry and every resume (a
receiver that saw it already answers 2xx and does nothing): with that, every event is delivered
exactly once. Rules (signature format, what is retried) are in docs/activity.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pricing_lab.errors import InputError, PricingLabError

SIGNATURE_HEADER = "Pricing-Lab-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_TYPE_HEADER = "Pricing-Lab-Event"
# Answers worth trying again: the endpoint is overloaded or failing, or asked us to wait.
RETRIED_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))


class DeliveryError(PricingLabError):
    """An event could not be delivered: refused by the endpoint (a 4xx other than 408/425/429)
    or still failing after every retry. Events before it were delivered and are in the cursor."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendOptions:
    """How events are sent: at most `rate` requests a second (None: no limit), each attempt
    waiting `timeout` seconds for an answer, failed attempts retried up to `max_retries` times
    after `backoff` × 2^(attempt − 1) seconds (at most `max_backoff`); at most `max_events`
    events this run (None: all that are left)."""

    rate: float | None = 10.0
    timeout: float = 10.0
    max_retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_events: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendReport:
    """What one run did: events delivered, retries, the last delivered `activity_id`, and the
    number of events left to send."""

    delivered: int
    retries: int
    last_activity_id: int | None
    remaining: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "retries": self.retries,
            "last_activity_id": self.last_activity_id,
            "remaining": self.remaining,
        }


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: bytes, header: str, body: bytes) -> bool:
    """Whether `header` (as `signature` writes it) signs `body` with `secret` (what a receiver
    checks; constant-time comparison)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in parts or "v1" not in parts or not parts["t"].isdigit():
        return False
    expected = signature(secret, int(parts["t"]), body)
    return hmac.compare_digest(expected, header)


def idempotency_key(scenario: str, activity_id: int) -> str:
    """The key of one event of one replay's stream: the same on every retry and resume."""
    return f"{scenario}:{activity_id}"


def payload(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of one activity event: its id, type, time and the event's fields (amounts
    as exact decimal strings)."""
    return {
        "id": idempotency_key(row["scenario"], row["activity_id"]),
        "type": row["kind"],
        "created_at": _json(row["timestamp"]),
        "data": {
            key: _json(value) for key, value in row.items() if key not in {"kind", "timestamp"}
        },
    }


def read_activity(path: str | Path) -> pl.DataFrame:
    """A replay's activity stream from its `activity.parquet` (or the output folder holding it)."""
    file = Path(path)
    folder = file if file.is_dir() else None
    if folder is not None:
        file = folder / "activity.parquet"
    if not file.exists():
        scenarios = folder / "scenarios" if folder is not None else None
        if scenarios is not None and scenarios.is_dir():  # a `compare` output folder
            names = ", ".join(sorted(p.name for p in scenarios.iterdir() if p.is_dir()))
            raise InputError(
                f"{folder}: a comparison; each scenario's activity stream is in "
                f"{scenarios}/NAME/ (scenarios: {names})"
            )
        raise InputError(f"{file}: no activity stream (replay with `pricing-lab simulate` first)")
    try:
        frame = pl.read_parquet(file)
    except (pl.exceptions.PolarsError, OSError) as exc:  # a damaged or foreign file
        raise InputError(f"{file}: not a readable Parquet file ({type(exc).__name__})") from None
    needed = {"activity_id", "timestamp", "kind", "scenario"}
    if not needed <= set(frame.columns):
        missing = ", ".join(sorted(needed - set(frame.columns)))
        raise InputError(f"{file}: not an activity stream (no {missing} column)")
    return frame.sort("activity_id")


def send_activity(
    events: pl.DataFrame,
    url: str,
    *,
    secret: bytes,
    cursor: str | Path,
    options: SendOptions | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int, int], None] | None = None,
) -> SendReport:
    """Post `events` (an activity stream) to `url` in `activity_id` order, from the one after the
    cursor's last delivered id, recording each delivery in the `cursor` file (created if missing).

    Raises `DeliveryError` when an event is refused or keeps failing (the cursor then names the
    last event delivered, and a new run resumes there), `InputError` for a cursor of another
    stream or endpoint.
    """
    chosen = options if options is not None else SendOptions()
    scenario = str(events["scenario"][0]) if events.height else ""
    state = _Cursor.load(Path(cursor), url=url, scenario=scenario)
    pending = events.filter(pl.col("activity_id") > state.delivered)
    total = pending.height
    if chosen.max_events is not None:
        pending = pending.head(chosen.max_events)
    delivered = retries = 0
    last_sent = 0.0
    for row in pending.iter_rows(named=True):
        body = json.dumps(payload(row), sort_keys=True, separators=(",", ":")).encode()
        key = idempotency_key(row["scenario"], row["activity_id"])
        attempt = 0
        while True:
            if chosen.rate:
                wait = last_sent + 1.0 / chosen.rate - time.monotonic()
                if wait > 0:
                    sleep(wait)
            last_sent = time.monotonic()
            failure = _post(url, body, key, row["kind"], secret, chosen.timeout)
            if failure is None:
                break
            retryable, reason = failure
            if not retryable:
                raise DeliveryError(f"event {key}: refused by {url}: {reason}")
            if attempt >= chosen.max_retries:
                raise DeliveryError(
                    f"event {key}: still failing after {attempt + 1} attempts ({reason}); "
                    f"{delivered} delivered this run, resume from cursor {cursor}"
                )
            attempt += 1
            retries += 1
            sleep(min(chosen.backoff * 2 ** (attempt - 1), chosen.max_backoff))
        state.save(row["activity_id"])
        delivered += 1
        if progress is not None:
            progress(delivered, total)
    return SendReport(
        delivered=delivered,
        retries=retries,
        last_activity_id=state.delivered or None,
        remaining=total - delivered,
    )


def _post(
    url: str, body: bytes, key: str, kind: str, secret: bytes, timeout: float
) -> tuple[bool, str] | None:
    """One attempt: None when delivered (2xx), else (worth retrying, why not)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: key,
            EVENT_TYPE_HEADER: kind,
            SIGNATURE_HEADER: signature(secret, int(time.time()), body),
            "User-Agent": "pricing-lab-activity",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
            return None
    except urllib.error.HTTPError as exc:
        return exc.code in RETRIED_STATUSES, f"HTTP {exc.code}"
    except TimeoutError:
        return True, f"no answer within {timeout} s"
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return True, f"no answer within {timeout} s"
        return True, f"cannot reach the endpoint: {exc.reason}"
    except (ConnectionError, OSError) as exc:
        return True, f"connection failed: {exc}"


@dataclass(slots=True)
class _Cursor:
    """The cursor file: the endpoint, the stream's scenario and the last delivered id."""

    path: Path
    url: str
    scenario: str
    delivered: int

    @classmethod
    def load(cls, path: Path, *, url: str, scenario: str) -> _Cursor:
        if not path.exists():
            return cls(path=path, url=url, scenario=scenario, delivered=0)
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            delivered = int(saved["delivered"])
            saved_url, saved_scenario = str(saved["url"]), str(saved["scenario"])
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{path}: not a cursor file of `pricing-lab activity send`") from None
        if (saved_url, saved_scenario) != (url, scenario):
            raise InputError(
                f"{path}: cursor of scenario {saved_scenario!r} sent to {saved_url}, not of "
                f"scenario {scenario!r} to {url} (use another --cursor file)"
            )
        return cls(path=path, url=url, scenario=scenario, delivered=delivered)

    def save(self, delivered: int) -> None:
        """Record `delivered` atomically (a new file renamed over the old one)."""
        self.delivered = delivered
        text = json.dumps({"url": self.url, "scenario": self.scenario, "delivered": delivered})
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text(text + "\n", encoding="utf-8")
        os.replace(partial, self.path)


def _json(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value
