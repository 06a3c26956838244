"""Headless Chromium driven over the DevTools protocol on a pipe: open a page, wait for it,
and evaluate JavaScript in it (layout questions --dump-dom cannot answer: heights, positions).

The protocol travels as NUL-separated JSON on the browser's file descriptors 3 (commands in)
and 4 (answers out) (`--remote-debugging-pipe`), so no port and no websocket library.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_COMMAND_FD, _ANSWER_FD = 3, 4


class Browser:
    """One headless Chromium process and one page in it."""

    def __init__(self, process: subprocess.Popen, commands: int, answers: int) -> None:
        self._process = process
        self._commands = os.fdopen(commands, "wb", buffering=0)
        self._answers = os.fdopen(answers, "rb", buffering=0)
        self._pending = b""
        self._next_id = 0
        self._session: str | None = None

    def _call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session is not None and not method.startswith("Target."):
            message["sessionId"] = self._session
        self._commands.write(json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._pending:
            chunk = self._answers.read(65536)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self._pending += chunk
        message, self._pending = self._pending.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str, width: int = 1280, height: int = 800) -> None:
        """Open `url` in a fresh page of `width` x `height` CSS pixels."""
        if self._session is not None:
            self._call("Target.closeTarget", {"targetId": self._target})
        self._target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self._call("Target.attachToTarget", {"targetId": self._target, "flatten": True})
        self._session = attached["sessionId"]
        self._call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self._call("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self._call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 90.0) -> Any:
        """Evaluate `expression` until it is truthy; its value, or an AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"page never satisfied: {expression}"
            time.sleep(0.5)

    def screenshot(self, path: Path) -> None:
        """Save the whole page (not only the window) as a PNG."""
        import base64

        metrics = self._call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1}
        shot = self._call("Page.captureScreenshot", {"clip": clip, "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def headless_chromium(executable: str, profile: Path) -> Iterator[Browser]:
    """A headless Chromium with a DevTools pipe; closed on exit."""
    command_read, command_write = os.pipe()
    answer_read, answer_write = os.pipe()

    def wire() -> None:  # in the child: its DevTools ends on fds 3 and 4
        high_in, high_out = os.dup(command_read), os.dup(answer_write)
        os.dup2(high_in, _COMMAND_FD)
        os.dup2(high_out, _ANSWER_FD)

    process = subprocess.Popen(
        [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(_COMMAND_FD, _ANSWER_FD),
        preexec_fn=wire,
    )
    os.close(command_read)
    os.close(answer_write)
    browser = Browser(process, command_write, answer_read)
    try:
        yield browser
    finally:
        process.terminate()
        process.wait(timeout=30)
