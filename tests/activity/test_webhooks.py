"""`activity send` against a local HTTP server that checks signatures, fails some requests and
counts deliveries: every event delivered exactly once, in order, after retries and a resume."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.activity.webhooks import DeliveryError, SendOptions, send_activity
from pricing_lab.cli import main
from pricing_lab.simulation.customers import customers_from_mapping
from pricing_lab.simulation.simulate import simulate
from tests.simulation.helpers import catalog, load_events
from tests.simulation.test_simulate import CUSTOMERS, EVENTS

SECRET = b"whsec-test"
FAST = SendOptions(rate=None, timeout=0.3, max_retries=3, backoff=0.01)


class Receiver:
    """A webhook endpoint: checks each request's HMAC-SHA256 signature, plays the failures
    planned per idempotency key (one per attempt: an HTTP status, or "slow": answers after the
    client's timeout), and processes each key once (a repeat is answered 200, not processed)."""

    def __init__(self, plan: dict[str, list[str]] | None = None) -> None:
        self.plan = {key: list(steps) for key, steps in (plan or {}).items()}
        self.processed: list[dict[str, object]] = []
        self.attempts: dict[str, int] = {}
        self.bad_signatures = 0
        self.duplicates = 0
        self.lock = threading.Lock()

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        key = headers["Idempotency-Key"]
        parts = dict(p.split("=", 1) for p in headers["Pricing-Lab-Signature"].split(","))
        signed = parts["t"].encode() + b"." + body
        expected = hmac.new(SECRET, signed, hashlib.sha256).hexdigest()
        with self.lock:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            if not hmac.compare_digest(expected, parts["v1"]):
                self.bad_signatures += 1
                return 401
            step = self.plan.get(key, []).pop(0) if self.plan.get(key) else "ok"
        if step == "slow":
            time.sleep(0.6)  # the client has given up; the work still happens
        elif step != "ok":
            return int(step)
        with self.lock:
            if any(event["id"] == key for event in self.processed):
                self.duplicates += 1
            else:
                self.processed.append(json.loads(body))
        return 200


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.handle(dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def stream() -> pl.DataFrame:
    con, report = load_events(EVENTS)
    result = simulate(con, catalog(), customers_from_mapping(CUSTOMERS), ingest=report)
    assert result.activity is not None and result.activity.height >= 10
    return result.activity


def test_every_event_once_in_order_after_retries_timeouts_and_a_resume(
    tmp_path: Path, receiver: tuple[Receiver, str], stream: pl.DataFrame
) -> None:
    state, url = receiver
    state.plan = {
        "base:2": ["500", "502"],
        "base:4": ["slow"],
        "base:7": ["429"],
        "base:9": ["503"],
    }
    cursor = tmp_path / "cursor.json"
    first = send_activity(
        stream, url, secret=SECRET, cursor=cursor, options=_with(FAST, max_events=5)
    )
    assert (first.delivered, first.retries, first.last_activity_id) == (5, 3, 5)
    assert json.loads(cursor.read_text())["delivered"] == 5
    rest = send_activity(stream, url, secret=SECRET, cursor=cursor, options=FAST)
    assert rest.delivered == stream.height - 5 and rest.remaining == 0 and rest.retries == 2
    time.sleep(0.5)  # the slow request's late processing
    ids = [event["id"] for event in state.processed]
    assert ids == [f"base:{n}" for n in range(1, stream.height + 1)]
    assert state.bad_signatures == 0 and state.duplicates == 1  # the timed-out attempt, ignored
    assert state.attempts["base:2"] == 3 and state.attempts["base:1"] == 1
    first_event = state.processed[0]
    row = stream.row(0, named=True)
    assert first_event["type"] == row["kind"] == "grant.granted"
    assert first_event["data"]["amount"] == str(row["amount"])  # type: ignore[index]
    # Nothing left: another run sends nothing.
    again = send_activity(stream, url, secret=SECRET, cursor=cursor, options=FAST)
    assert again.delivered == 0 and len(state.processed) == stream.height


def test_a_refused_or_failing_event_stops_the_run_and_the_next_run_resumes_there(
    tmp_path: Path, receiver: tuple[Receiver, str], stream: pl.DataFrame
) -> None:
    state, url = receiver
    state.plan = {"base:3": ["400"], "base:6": ["500"] * 5}
    cursor = tmp_path / "cursor.json"
    with pytest.raises(DeliveryError, match=r"event base:3: refused by .*: HTTP 400"):
        send_activity(stream, url, secret=SECRET, cursor=cursor, options=FAST)
    assert json.loads(cursor.read_text())["delivered"] == 2
    with pytest.raises(DeliveryError, match="event base:6: still failing after 4 attempts"):
        send_activity(stream, url, secret=SECRET, cursor=cursor, options=FAST)
    assert json.loads(cursor.read_text())["delivered"] == 5
    send_activity(stream, url, secret=SECRET, cursor=cursor, options=FAST)
    assert [e["id"] for e in state.processed] == [f"base:{n}" for n in range(1, stream.height + 1)]


def test_cli_sends_signed_with_the_secret_from_the_environment(
    tmp_path: Path,
    receiver: tuple[Receiver, str],
    stream: pl.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state, url = receiver
    stream.write_parquet(tmp_path / "activity.parquet")
    command = ["activity", "send", str(tmp_path), "--to", url, "--secret-env", "HOOK_SECRET"]
    assert main([*command, "--quiet"]) == 2
    assert "set the environment variable HOOK_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    assert main([*command, "--rate", "1000", "--max-events", "4"]) == 0
    # stderr is not a terminal here: progress in whole lines (docs/scenarios.md), no bare `\r`
    err = capsys.readouterr().err
    assert err.startswith("sending the activity events: done in ") and err.endswith(" s\n")
    assert "\r" not in err
    assert main([*command, "--quiet", "--rate", "1000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["remaining"] == 0 and report["last_activity_id"] == stream.height
    assert len(state.processed) == stream.height and state.bad_signatures == 0
    assert (tmp_path / "activity.cursor.json").exists()


def _with(options: SendOptions, **changes: object) -> SendOptions:
    import dataclasses

    return dataclasses.replace(options, **changes)  # type: ignore[arg-type]


def test_a_comparison_folder_is_named_with_where_its_streams_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRICING_LAB_WEBHOOK_SECRET", SECRET.decode())
    for name in ("base", "generous"):
        (tmp_path / "scenarios" / name).mkdir(parents=True)
    command = ["activity", "send", str(tmp_path), "--to", "http://127.0.0.1:9/"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "a comparison" in err and "scenarios: base, generous" in err
    assert "Traceback" not in err


def test_a_damaged_activity_file_is_bad_input_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRICING_LAB_WEBHOOK_SECRET", SECRET.decode())
    damaged = tmp_path / "activity.parquet"  # a copy cut short, as an interrupted transfer leaves
    pl.DataFrame({"activity_id": [1, 2, 3]}).write_parquet(damaged)
    damaged.write_bytes(damaged.read_bytes()[:40])
    assert main(["activity", "send", str(damaged), "--to", "http://127.0.0.1:9/"]) == 2
    assert capsys.readouterr().err == (
        f"pricing-lab: {damaged}: not a readable Parquet file (ComputeError)\n"
    )


@pytest.mark.parametrize("url", ["http://[::1", "http://hooks:99999/", "http:///path"])
def test_a_url_that_cannot_be_used_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    monkeypatch.setenv("PRICING_LAB_WEBHOOK_SECRET", SECRET.decode())
    assert main(["activity", "send", str(tmp_path), "--to", url]) == 2
    assert capsys.readouterr().err == f"pricing-lab: --to: not an http(s) URL: {url!r}\n"
