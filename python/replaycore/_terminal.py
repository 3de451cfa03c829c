"""What the command line shows a person at a terminal: colour and progress.

Both are for terminals only, and both are a few lines of ANSI escapes rather
than a dependency (a terminal library would cost more start-up time than the
whole package):

* :class:`Style` colours a report when its stream is a terminal, ``NO_COLOR``
  is unset or empty (https://no-color.org) and ``TERM`` is not ``dumb``;
  otherwise it returns text unchanged.
* :class:`Progress` redraws one line on stderr while a long command runs,
  only when stderr is a terminal and only once the command has run for half a
  second, so piped output and quick commands get nothing extra.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

__all__ = ["Progress", "Style", "color_enabled", "human_size", "is_terminal", "reading_position"]


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (False for anything without ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or closed
        return False


def color_enabled(stream: TextIO) -> bool:
    """Whether to colour what is written to ``stream``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


class Style:
    """ANSI colours for a report, or none: ``Style(False).bad(x) == x``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _sgr(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text

    def bold(self, text: str) -> str:
        return self._sgr("1", text)

    def dim(self, text: str) -> str:
        return self._sgr("2", text)

    def good(self, text: str) -> str:
        return self._sgr("32", text)

    def warn(self, text: str) -> str:
        return self._sgr("33", text)

    def bad(self, text: str) -> str:
        return self._sgr("1;31", text)


def reading_position(path: str | os.PathLike[str]) -> Callable[[], int | None]:
    """A callable returning how far this process has read ``path``, or None.

    The readers (the Rust core, the reference) take a path and offer no
    progress callback, but the kernel knows the offset of every open file
    descriptor: on Linux, ``/proc/self/fdinfo`` (what ``pv --watchfd`` reads).
    The furthest offset of any descriptor open on the file is taken; None
    where there is no ``/proc`` or the file is not open.
    """
    target = os.path.realpath(path)

    def position() -> int | None:
        best: int | None = None
        try:
            fds = os.listdir("/proc/self/fd")
        except OSError:
            return None
        for fd in fds:
            try:
                if os.readlink(f"/proc/self/fd/{fd}") != target:
                    continue
                with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
                    for line in info:
                        if line.startswith("pos:"):
                            pos = int(line.split()[1])
                            best = pos if best is None else max(best, pos)
                            break
            except (OSError, ValueError):  # closed meanwhile
                continue
        return best

    return position


def human_size(count: float) -> str:
    """``count`` bytes in decimal units: ``human_size(2_500_000) == "2.5 MB"``."""
    if count < 1000:
        return f"{count:.0f} B"
    units = ("kB", "MB", "GB", "TB", "PB", "EB")
    for unit in units[:-1]:
        count /= 1000
        if count < 1000:
            return f"{count:.1f} {unit}"
    return f"{count / 1000:,.1f} {units[-1]}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """One progress line on ``stream``, redrawn by a daemon thread.

    The thread only reads: ``records`` (which the command bumps as it goes,
    when it knows) and ``bytes_done()`` (polled; see :func:`reading_position`),
    so it keeps drawing while the main thread is inside a Rust call that
    released the GIL. The line shows what is known -- percentage, bytes and
    records done with their rates, and the time left -- and is erased on exit.
    Nothing is drawn unless ``stream`` is a terminal, nor before ``delay_s``.
    """

    def __init__(
        self,
        stream: TextIO,
        label: str,
        *,
        total_bytes: int | None = None,
        total_records: int | None = None,
        bytes_done: Callable[[], int | None] | None = None,
        delay_s: float = 0.5,
        interval_s: float = 0.2,
    ) -> None:
        self.stream = stream
        self.label = label
        self.total_bytes = total_bytes
        self.total_records = total_records
        self.bytes_done = bytes_done
        self.records = 0
        self.shown = False
        self._delay_s = delay_s
        self._interval_s = interval_s
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        if is_terminal(self.stream):
            self._thread = threading.Thread(
                target=self._run, name="replaycore-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.shown:
            self._write("\r" + " " * self._width + "\r")

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._start

    def line(self) -> str:
        """The progress line as it stands now: the most useful first, since a
        narrow terminal cuts the end."""
        elapsed = max(self.elapsed_s, 1e-9)
        done = None
        if self.bytes_done is not None:
            with contextlib.suppress(OSError):  # e.g. a file not created yet
                done = self.bytes_done()
        fraction: float | None = None
        if done is not None and self.total_bytes:
            done = min(done, self.total_bytes)
            fraction = done / self.total_bytes
        elif self.records and self.total_records:
            fraction = min(self.records / self.total_records, 1.0)
        parts = [self.label]
        if fraction:
            remaining = elapsed * (1 - fraction) / fraction
            parts.append(f"{fraction:.0%}  ETA {_duration(remaining)}")
        else:
            parts.append(f"{_duration(elapsed)} elapsed")
        if done is not None:
            of = f" of {human_size(self.total_bytes)}" if self.total_bytes else ""
            parts.append(f"{human_size(done)}{of}  {human_size(done / elapsed)}/s")
        if self.records:
            of = f" of {self.total_records:,}" if self.total_records else ""
            parts.append(f"{self.records:,}{of} records  {self.records / elapsed:,.0f}/s")
        return "  ".join(parts)

    def _run(self) -> None:
        if self._stop.wait(self._delay_s):
            return
        while True:
            text = self.line()
            try:
                columns = os.get_terminal_size(self.stream.fileno()).columns
            except (AttributeError, ValueError, OSError):
                columns = 80
            if columns <= 0:  # a terminal that does not say (a bare pty)
                columns = 80
            text = text[: max(columns - 1, 10)]  # a wrapped line cannot be redrawn
            self._write("\r" + text.ljust(self._width))
            self._width = max(self._width, len(text))
            self.shown = True
            if self._stop.wait(self._interval_s):
                return

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: draw no more
            self._stop.set()
