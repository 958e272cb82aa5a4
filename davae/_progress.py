"""Per-epoch progress of a fit: a tqdm bar on a terminal, a short loss table elsewhere (a log file)."""

from __future__ import annotations

import math
import sys
from typing import Iterator, Mapping


def _interactive(stream) -> bool:
    """A terminal, or a Jupyter kernel's output stream (where tqdm draws a widget)."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False
    return type(stream).__module__.startswith("ipykernel")


class EpochProgress:
    """Iterate over ``range(epochs)``; :meth:`set_postfix` reports an epoch's loss parts.

    On a terminal (stderr a TTY) this is a tqdm bar. Otherwise, e.g. stderr redirected to a rule's log, a bar
    would write a line per update, so the loss parts are printed as one line every ``ceil(epochs /
    max_lines)`` epochs plus the first and the last: at most ``max_lines + 2`` lines per fit.
    ``enabled=False`` prints nothing.
    """

    def __init__(self, epochs: int, *, enabled: bool = True, desc: str = "DAVAE", max_lines: int = 20,
                 stream=None):
        self.epochs, self.enabled, self.desc = int(epochs), bool(enabled), desc
        self.stream = sys.stderr if stream is None else stream
        self.every = max(1, math.ceil(self.epochs / max(1, max_lines)))
        self.epoch = -1
        self._bar = None
        if self.enabled and _interactive(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(range(self.epochs), desc=desc, unit="epoch", leave=False, file=self.stream)

    def __iter__(self) -> Iterator[int]:
        if self._bar is not None:
            yield from self._bar
            return
        for self.epoch in range(self.epochs):
            yield self.epoch

    def set_postfix(self, post: Mapping[str, str]) -> None:
        if self._bar is not None:
            self._bar.set_postfix(post)
            return
        done = self.epoch + 1
        if not self.enabled or not (done == 1 or done % self.every == 0 or done == self.epochs):
            return
        parts = "  ".join(f"{k} {v}" for k, v in post.items())
        width = len(str(self.epochs))
        print(f"{self.desc} epoch {done:>{width}}/{self.epochs}  {parts}", file=self.stream, flush=True)
