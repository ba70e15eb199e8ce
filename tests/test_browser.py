"""The report in a real browser: it loads without console errors, every figure decodes, the table sorts and filters.

Drives a headless Chromium through the DevTools protocol with a minimal websocket client
written here on the standard library (no Playwright, no browser download, no `websockets`).
Needs a `chromium` (or `chromium-browser`, `google-chrome`) binary on PATH; without one the
tests are skipped. `scripts/install-browser` installs Debian's chromium.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import numpy as np
import polars as pl
import pytest
from test_report import make_exponents, make_records

from muscale.kinds.coord_check import write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for name in BROWSERS if (path := shutil.which(name))), None)
TIMEOUT = 60.0

# `make test` installs the browser and runs these; the edit loop (`make test-fast`) does not.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        BROWSER is None, reason="no chromium binary on PATH (scripts/install-browser installs Debian's chromium)"
    ),
]


class DevTools:
    """Just enough of RFC 6455 to speak the Chrome DevTools Protocol to one target: masked text
    frames out, (possibly fragmented) text frames in, ping answered, everything else an error."""

    def __init__(self, ws_url: str, timeout: float = TIMEOUT):
        url = urllib.parse.urlsplit(ws_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {url.path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.stream = self.sock.makefile("rb")
        status = self.stream.readline()
        assert b" 101 " in status, f"websocket handshake refused: {status!r}"
        while self.stream.readline() not in (b"\r\n", b""):
            pass
        self.last_id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        self.stream.close()
        self.sock.close()

    def _send(self, payload: bytes, opcode: int = 0x1) -> None:
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) < n:
            raise ConnectionError("browser closed the DevTools connection")
        return data

    def _receive(self) -> dict:
        message = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n >= 126:
                n = int.from_bytes(self._read(2 if n == 126 else 8), "big")
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("browser closed the DevTools connection")
            if opcode == 0x9:
                self._send(payload, 0xA)
                continue
            if opcode == 0xA:
                continue
            message += payload
            if b0 & 0x80:
                return json.loads(message)

    def call(self, method: str, **params) -> dict:
        self.last_id += 1
        self._send(json.dumps({"id": self.last_id, "method": method, "params": params}).encode())
        while True:
            message = self._receive()
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str) -> dict:
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._receive())

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(params["entry"].get("text", ""))
        return errors

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, as a reader would make it."""
        x, y = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            f" e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module, on a free port it picks itself (--remote-debugging-port=0)."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = open(profile.parent / "chromium.log", "wb")
    proc = subprocess.Popen(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1400,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"chromium did not start: {(profile.parent / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT) as response:
            targets = json.load(response)
        yield next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    """The report of a two-mode, long-horizon check, loaded once; console events are kept from before loading."""
    records = make_records(steps=(0, 1, 2, 4), horizon="long")
    exponents = make_exponents(records)
    # α spread out (and one unfittable) so that sorting has something to do
    alpha = np.random.default_rng(1).normal(0, 0.5, exponents.height)
    alpha[7] = np.nan
    exponents = exponents.with_columns(alpha=pl.Series(alpha))
    path = write_report(
        records,
        exponents,
        tmp_path_factory.mktemp("report") / "report.html",
        {"command": "muscale coord-check <b>x</b>"},
    )
    tab = DevTools(browser)
    try:
        for domain in ("Page", "Runtime", "Log"):
            tab.call(f"{domain}.enable")
        tab.call("Page.navigate", url=path.as_uri())
        tab.wait_for("Page.loadEventFired")
        yield tab
    finally:
        tab.close()


ROWS = "Array.from(document.querySelectorAll('#exponents tbody tr'))"
VISIBLE = f"{ROWS}.filter(r => !r.hidden)"


def alphas(tab: DevTools) -> list[str]:
    return tab.evaluate(f"{ROWS}.map(r => r.cells[5].textContent)")


def test_loads_without_console_errors(page):
    assert page.evaluate("document.readyState") == "complete"
    assert page.evaluate("document.title").startswith("muscale coordinate check")
    assert page.console_errors() == []
    # the capture itself works: an error logged now is seen
    page.evaluate("console.error('probe from the test')")
    page.call("Runtime.evaluate", expression="0")  # let the console event arrive
    assert any("probe from the test" in e for e in page.console_errors())
    page.events.clear()


def test_every_image_decodes(page):
    images = page.evaluate(
        "Promise.all(Array.from(document.images).map(i => i.decode().then("
        "() => [i.alt, i.naturalWidth, i.naturalHeight], e => [i.alt, 0, String(e)])))"
    )
    assert len(images) >= 5  # per-role coord checks, α trajectories, loss, one per module
    assert [img for img in images if not (img[1] > 0 and img[2] > 0)] == []
    assert page.evaluate("document.querySelectorAll('details.module').length") == 4


def test_clicking_alpha_header_sorts_rows(page):
    before = alphas(page)
    page.click("#exponents th[data-key=alpha]")
    ascending = alphas(page)
    assert ascending[:5] != before[:5]
    numbers = [float(a) for a in ascending if a != "—"]
    assert numbers == sorted(numbers) and ascending[-1] == "—"  # numeric order, — last
    assert sorted(ascending) == sorted(before)  # the same rows, moved
    page.click("#exponents th[data-key=alpha]")
    descending = alphas(page)
    numbers = [float(a) for a in descending if a != "—"]
    assert numbers == sorted(numbers, reverse=True) and descending[-1] == "—"  # — last either way
    assert (
        page.evaluate("document.querySelector('#exponents th[data-key=alpha]').getAttribute('aria-sort')")
        == "descending"
    )
    # rows keep their verdict colour when moved
    assert page.evaluate(f"{ROWS}.every(r => r.className === 'v-' + r.cells[10].textContent)")
    assert page.console_errors() == []


def test_filter_box_and_verdict_checkboxes(page):
    total = page.evaluate(f"{ROWS}.length")
    page.evaluate("(() => { const box = document.getElementById('exponent-filter'); box.focus(); box.select(); })()")
    page.call("Input.insertText", text="blocks.0")
    visible = page.evaluate(f"{VISIBLE}.map(r => r.cells[1].textContent)")
    assert 0 < len(visible) < total and all("blocks.0" in m for m in visible)
    assert page.evaluate("document.getElementById('exponent-shown').textContent") == f"{len(visible)} of {total} rows"
    page.click("#exponent-filters input[value=pass]")  # every row here passes
    assert page.evaluate(f"{VISIBLE}.length") == 0
    page.click("#exponent-filters input[value=pass]")
    page.evaluate(
        "(() => { const box = document.getElementById('exponent-filter'); box.value = '';"
        " box.dispatchEvent(new Event('input')); })()"
    )
    assert page.evaluate(f"{VISIBLE}.length") == total
    assert page.console_errors() == []


def test_user_text_stays_text(page):
    assert page.evaluate("document.querySelectorAll('table.meta b').length") == 0
    assert "<b>x</b>" in page.evaluate("document.querySelector('table.meta td').textContent")


def test_worst_table_link_opens_the_module(page):
    # every row passes with expected 0 in this report, so the worst table lists the last step's fits
    link = page.evaluate("document.querySelector('table a[href^=\"#module-\"]').getAttribute('href')")
    assert page.evaluate(f"document.querySelector('{link}').open") is False
    page.click(f"table a[href='{link}']")
    assert page.evaluate(f"document.querySelector('{link}').open") is True
    assert page.evaluate("location.hash") == link
    assert page.console_errors() == []
