"""A cell's cost across attempts: a killed job that resumes must not report only its last part.

Each attempt keeps `attempts.json` in the cell's folder up to date (every few seconds, atomically),
so a SIGKILL loses at most that much; the next attempt of the same run (same key: recipe, split,
init) adds it to its own time. The file is removed once the cell's metrics.json is written, so a
re-run after an edit starts from zero.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from .atomic import write_json

FILE = "attempts.json"
EVERY_S = 5.0


class Attempts:
    def __init__(self, out_dir: Path, key: str, every_s: float = EVERY_S):
        self.path, self.key, self.every_s = Path(out_dir) / FILE, key, every_s
        self.previous_s, self.previous_n = self._read()
        self.t0 = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _read(self) -> tuple[float, int]:
        try:
            rec = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return 0.0, 0
        if not isinstance(rec, dict) or rec.get("key") != self.key:
            return 0.0, 0  # another run's (other recipe, split or init): not this cell's cost
        return float(rec.get("seconds", 0.0)), int(rec.get("attempts", 0))

    def _write(self) -> None:
        try:
            write_json(self.path, {"key": self.key, "seconds": self.seconds, "attempts": self.attempts})
        except OSError:
            pass  # a full disk must not kill the run over its bookkeeping

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            self._write()

    @property
    def seconds(self) -> float:
        return self.previous_s + (time.time() - self.t0)

    @property
    def attempts(self) -> int:
        return self.previous_n + 1

    def start(self) -> "Attempts":
        self._write()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._write()

    def done(self) -> None:
        """The cell's record is written: nothing left to add to."""
        self.path.unlink(missing_ok=True)
