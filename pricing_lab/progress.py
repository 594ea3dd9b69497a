"""Progress of long commands on stderr: the phase, done / total, and elapsed time.

A `ProgressDisplay` is told which phase runs (`phase`), and receives the engine's plain
`progress(done, total)` callback (`update`) inside a phase. On a terminal it keeps one status line
up to date, redrawn at least every `tick` seconds (1 s) by a background ticker, so the elapsed time
moves during long phases that report nothing. When stderr is not a terminal (a log file, a
scheduler) it writes whole lines only: one when a phase ends (with its time), one for progress at
most every `line_every` seconds (10 s), and one every `line_every` seconds of silence. A command
that stops on an error shows the error alone: the unfinished phase leaves no line.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

Clock = Callable[[], float]
ScenarioProgress = Callable[[str, int, int], None]


def duration(seconds: float) -> str:
    """Elapsed time for people: `4.2 s`, `2 min 05 s`, `1 h 02 min`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ProgressDisplay:
    """Phases with done / total and elapsed time, on `stream` (stderr by default).

    Use it as a context manager; with `enabled=False` it shows nothing (`--quiet`).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        enabled: bool = True,
        tick: float = 1.0,
        line_every: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tick = tick
        self.line_every = line_every
        self.clock = clock
        isatty = getattr(self.stream, "isatty", None)
        self.terminal = bool(isatty and isatty())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._began = clock()
        self._phase = ""
        self._unit = ""
        self._phase_began = self._began
        self._done: int | None = None
        self._total: int | None = None
        self._last_line = self._began
        self._status_shown = False

    # -- what the command tells it --------------------------------------------------------------

    def phase(self, name: str, *, unit: str = "") -> None:
        """Start phase `name` (the previous one ends); `unit` names what `update` counts."""
        if not self.enabled:
            return
        with self._lock:
            self._end_phase()
            self._phase, self._unit = name, unit
            self._phase_began = self.clock()
            self._done = self._total = None
            if self.terminal:
                self._draw()
            else:
                self._last_line = self._phase_began  # the first line after line_every
        self._start_ticker()

    def update(self, done: int, total: int) -> None:
        """The engine's progress callback: `done` of `total` (customers) finished."""
        if not self.enabled:
            return
        with self._lock:
            self._done, self._total = done, total
            if self.terminal:
                self._draw()
            elif done >= total or self.clock() - self._last_line >= self.line_every:
                self._line(self._status())

    def note(self, text: str) -> None:
        """A line of information (not a phase), shown above the status line."""
        if not self.enabled:
            return
        with self._lock:
            if self.terminal:
                self._clear()
                self.stream.write(text + "\n")
                self._draw()
            else:
                self._line(text, stamp=False)

    def close(self, *, failed: bool = False) -> None:
        """End the last phase (`failed`: without a line saying it is done) and stop the ticker."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if not self.enabled:
            return
        with self._lock:
            if failed:
                self._clear()
            else:
                self._end_phase()
            self._phase = ""

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close(failed=error is not None)

    def scenarios(self, *, unit: str = "") -> ScenarioProgress:
        """A `compare` progress callback `(scenario, index, count)` shown as phases: costing
        first (the first call), then replaying scenario k/n (`unit`: what `update` counts in
        it), then writing."""
        started = [False]

        def report(name: str, index: int, count: int) -> None:
            if not started[0]:
                started[0] = True
                self.phase(f"costing the events for {count} scenarios")
            elif index >= count:
                self.phase("writing the comparison and the report")
            else:
                self.phase(f"replaying scenario {index + 1}/{count}: {name}", unit=unit)

        return report

    # -- drawing -----------------------------------------------------------------------------------

    def _status(self) -> str:
        now = self.clock()
        text = self._phase
        if self._done is not None and self._total is not None:
            unit = f" {self._unit}" if self._unit else ""
            text += f": {self._done:,}/{self._total:,}{unit}"
        return f"{text} · {duration(now - self._phase_began)} (total {duration(now - self._began)})"

    def _draw(self) -> None:
        self.stream.write("\r\x1b[K" + self._status())
        self.stream.flush()
        self._status_shown = True

    def _clear(self) -> None:
        if self._status_shown:
            self.stream.write("\r\x1b[K")
            self._status_shown = False

    def _line(self, text: str, *, stamp: bool = True) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        if stamp:
            self._last_line = self.clock()

    def _end_phase(self) -> None:
        if not self._phase:
            return
        took = duration(self.clock() - self._phase_began)
        done = f"{self._phase}: done in {took}"
        if self.terminal:
            self._clear()
            self.stream.write(done + "\n")
            self.stream.flush()
        else:
            self._line(done)

    def _start_ticker(self) -> None:
        if self._ticker is not None:
            return
        self._ticker = threading.Thread(target=self._run_ticker, name="progress", daemon=True)
        self._ticker.start()

    def _run_ticker(self) -> None:
        while not self._stop.wait(self.tick):
            with self._lock:
                if not self._phase:
                    continue
                if self.terminal:
                    self._draw()
                elif self.clock() - self._last_line >= self.line_every:
                    self._line(self._status())
