"""Headless Chromium (Debian's package, installed by `make test`) for rendering HTML reports."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

# Injected before the page's own scripts: every console error or uncaught exception is written into
# an element that --dump-dom then shows us.
_ERROR_PROBE = """<script>
(function () {
  var errors = [];
  function keep(text) {
    errors.push(String(text));
    var box = document.getElementById('console-errors') || document.createElement('pre');
    box.id = 'console-errors'; box.textContent = errors.join('\\n');
    if (!box.parentNode && document.body) { document.body.appendChild(box); }
  }
  var original = console.error;
  console.error = function () {
    keep(Array.prototype.join.call(arguments, ' '));
    original.apply(console, arguments);
  };
  window.addEventListener('error', function (e) { keep('uncaught: ' + e.message); });
  window.addEventListener('unhandledrejection', function (e) { keep('rejection: ' + e.reason); });
})();
</script>"""


@dataclass(frozen=True, slots=True)
class RenderedPage:
    dom: str
    console_errors: str
    screenshot: Path


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("Debian's chromium package is not installed (make test installs it)")
    return path


def render(html_file: Path, screenshot: Path, *, budget_ms: int = 15000) -> RenderedPage:
    """Open `html_file` in headless Chromium: its DOM after scripts ran, console errors, a PNG."""
    html_file = html_file.resolve()
    text = html_file.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        # The probed copy lives in the throw-away profile folder, never beside the report.
        probed = Path(profile) / "probed" / html_file.name
        probed.parent.mkdir()
        probed.write_text(text.replace("<head>", "<head>" + _ERROR_PROBE, 1), encoding="utf-8")
        common = [
            chromium_path(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
        ]
        dom = subprocess.run(
            [*common, "--dump-dom", probed.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        subprocess.run(
            [*common, "--window-size=1280,2400", f"--screenshot={screenshot}", html_file.as_uri()],
            capture_output=True,
            timeout=120,
            check=True,
        )
    start = dom.find('id="console-errors"')
    errors = ""
    if start != -1:
        errors = dom[dom.find(">", start) + 1 : dom.find("</pre>", start)]
    return RenderedPage(dom=dom, console_errors=errors, screenshot=screenshot)
