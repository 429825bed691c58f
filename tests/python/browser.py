"""Headless Chromium (the Debian package, installed by `make system-deps`) driven over the DevTools
protocol: open a page, evaluate JavaScript in it, record the requests it makes, take a screenshot.
Used by the UI test (Dagster's asset lineage) and the dashboard test (`dataops report`)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.python.dagster_harness import ProcessGroup, free_port, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def _page_websocket(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
            pages = [t for t in json.load(response) if t.get("type") == "page"]
    except OSError:
        return None
    return pages[0]["webSocketDebuggerUrl"] if pages else None


class Page:
    """One page of a running Chromium, over its DevTools websocket."""

    def __init__(self, socket: Any):
        self._socket = socket
        self._ids = itertools.count(1)
        self.requests: list[str] = []  # URLs requested since Network.enable

    def call(self, method: str, **params: Any) -> dict:
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=120))
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            if message.get("id") == call_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        assert "exceptionDetails" not in result, f"{expression}: {result['exceptionDetails']}"
        return result["result"].get("value")

    def open(self, url: str, ready: str, what: str) -> None:
        """Navigate to ``url`` and wait until the expression ``ready`` is true."""
        self.call("Network.enable")
        self.call("Page.navigate", url=url)
        probe = f"(() => {{ try {{ return Boolean({ready}); }} catch (e) {{ return false; }} }})()"
        wait_for(what, lambda: self.evaluate(probe), timeout=300, interval=1)

    def html(self) -> str:
        """The page's HTML; empty while a navigation has not yet created the new document
        (``documentElement`` is null for a moment: read too early, the page is not yet there)."""
        return self.evaluate("document.documentElement ? document.documentElement.outerHTML : ''")

    def screenshot(self, path: Path) -> Path:
        picture = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(picture))
        return path


@contextmanager
def chromium_page(work: Path, window: str = "1600,1000") -> Iterator[Page]:
    """A headless Chromium started for the test (its own process group, stopped by its id)."""
    from websockets.sync.client import connect

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: run `make system-deps` (system-packages.txt)")
    port = free_port()
    browser = ProcessGroup(
        [CHROMIUM, *HEADLESS_FLAGS, f"--user-data-dir={work / 'chromium-profile'}",
         f"--window-size={window}", f"--remote-debugging-port={port}", "about:blank"],
        dict(os.environ),
        work / "chromium.log",
    )
    try:
        endpoint = wait_for("Chromium's DevTools endpoint", lambda: _page_websocket(port))
        with connect(endpoint, max_size=None, open_timeout=60) as socket:
            yield Page(socket)
    finally:
        browser.stop()
