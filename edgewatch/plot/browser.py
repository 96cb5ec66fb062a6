"""A headless Chromium driven over the DevTools protocol, for screenshots and browser tests.

Only ``websocket-client`` (already an agent dependency) and the browser
binary: no selenium, no chromedriver version matching. The browser gets a
fresh profile in a temporary directory and flags that keep it off the
network (no sync, no component updates, no QUIC), so it talks only to the
page it is pointed at.

    python -m edgewatch.plot.browser http://127.0.0.1:8080/ -o docs/img/live-page.png --wait 20
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from edgewatch.errors import EdgewatchError

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
    "--disable-dev-shm-usage",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


class BrowserError(EdgewatchError):
    """The browser could not be started or did not answer."""


def find_chromium() -> str | None:
    """The browser binary: ``$EDGEWATCH_CHROMIUM`` or the first of chromium/chrome on PATH."""
    env = os.environ.get("EDGEWATCH_CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class HeadlessChromium:
    """One headless browser with one page; ``call`` sends DevTools commands to that page."""

    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 860,
                 start_timeout: float = 30.0) -> None:
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("no chromium found; install it (apt install chromium) or set EDGEWATCH_CHROMIUM")
        self.width, self.height = width, height
        self.start_timeout = start_timeout
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: Any = None
        self._next_id = 0

    def start(self) -> HeadlessChromium:
        import websocket  # websocket-client

        self._profile = tempfile.TemporaryDirectory(prefix="edgewatch-chromium-", ignore_cleanup_errors=True)
        profile = Path(self._profile.name)
        args = [self.binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1", f"--window-size={self.width},{self.height}", "about:blank"]
        # its own process group, so that closing ends Chromium's helper processes too
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._proc.poll() is not None:
                raise BrowserError(f"{self.binary} exited with code {self._proc.returncode} at start")
            if time.monotonic() > deadline:
                self.close()
                raise BrowserError(f"{self.binary} did not open its DevTools port in {self.start_timeout:.0f} s")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        page = None
        while page is None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
                targets = json.load(resp)
            page = next((t for t in targets if t.get("type") == "page"), None)
            if page is None:
                if time.monotonic() > deadline:
                    self.close()
                    raise BrowserError("the browser opened no page")
                time.sleep(0.05)
        self._ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.call("Page.enable")
        self.call("Runtime.enable")
        return self

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and wait for its answer (events in between are dropped)."""
        self._next_id += 1
        ident = self._next_id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == ident:
                if "error" in msg:
                    raise BrowserError(f"{method} failed: {msg['error']}")
                return msg.get("result", {})

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises are awaited)."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"page script failed: {res['exceptionDetails'].get('text')} in {expression[:80]!r}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.2) -> Any:
        """Poll ``expression`` until it is truthy; its value, or BrowserError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout:.0f} s waiting for {expression[:120]!r}")
            time.sleep(interval)

    def screenshot(self, path: str | os.PathLike[str]) -> Path:
        """Save the visible page as PNG."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:
                pass
            self._ws = None
        if self._proc is not None:
            _signal_group(self._proc, signal.SIGTERM)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _signal_group(self._proc, signal.SIGKILL)
                self._proc.wait(timeout=5)
            self._proc = None
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    def __enter__(self) -> HeadlessChromium:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Screenshot a page after it has drawn score bars: what made docs/img/live-page.png."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgewatch.plot.browser", description=main.__doc__)
    ap.add_argument("url")
    ap.add_argument("-o", "--output", required=True, help="PNG file to write")
    ap.add_argument("--wait", type=float, default=5.0, help="seconds to wait after the first bar appears")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=860)
    args = ap.parse_args(argv)
    with HeadlessChromium(width=args.width, height=args.height) as browser:
        browser.navigate(args.url)
        browser.wait_for("document.querySelectorAll('#scores rect.bar').length > 0", timeout=60)
        time.sleep(args.wait)
        print(browser.screenshot(args.output))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
