"""stderr as a watching thread (app.progress, app.waiting) writes it: whole lines, each with its moment."""
from __future__ import annotations

import io
import threading
import time


class StderrLines(io.TextIOBase):
    def __init__(self):
        self.timed: list[tuple[float, str]] = []
        self._buf = ""
        self._lock = threading.Lock()

    @property
    def lines(self) -> list[str]:
        return [line for _, line in self.timed]

    def isatty(self):
        return False  # the JSON lines or plain lines a pipe gets, not a bar

    def write(self, text):
        with self._lock:
            self._buf += text
            while "\n" in self._buf:
                line, self._buf = self._buf.split("\n", 1)
                self.timed.append((time.monotonic(), line))
        return len(text)
