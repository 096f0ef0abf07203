"""The progress line of a long run, on stderr: simulated time against the horizon, requests
done, rate and ETA.

The cluster loop asks for an update only when the simulated clock crosses :attr:`Progress.next`
(the same comparison as its horizon check, so there is no per-event cost). Each update reads
the wall clock once and moves the next check so that checks come about ten times a wall
second, whatever the ratio of simulated to wall time; the line itself is rewritten at most
twice a second on a terminal and every few seconds otherwise (``--progress`` into a pipe or a
file: one line each time, so a log stays readable). Nothing is written to stdout.
"""

from __future__ import annotations

import sys
import time as _time

from blis_core.events import MAX_TICK

CHECKS_PER_SECOND = 10


class Progress:
    """Progress of one run, written to ``stream`` (stderr by default)."""

    def __init__(self, total_requests: int | None = None, horizon: int = MAX_TICK, *,
                 stream=None, terminal: bool | None = None, wall=_time.monotonic,
                 label: str = "blis", always: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = _isatty(self.stream) if terminal is None else terminal
        self.total = total_requests or None
        self.horizon = horizon if horizon < MAX_TICK else None
        self.wall = wall
        self.label = label
        self.every = 0.5 if self.terminal else 5.0   # wall seconds between two lines
        self.next = 0                                # simulated tick of the next check
        self.step = 1_000                            # simulated ticks between two checks
        self.start = self.last_check = self.last_line = wall()
        self.wrote = False
        # False (progress chosen automatically, on a terminal): a run over before the first
        # refresh leaves no line behind.
        self.always = always

    def update(self, clock: int, cluster) -> int:
        """A check at simulated ``clock``; returns the tick of the next one."""
        now = self.wall()
        since = now - self.last_check
        self.last_check = now
        target = 1.0 / CHECKS_PER_SECOND
        if since < target / 2:
            self.step *= 2
        elif since > target * 2 and self.step > 1:
            self.step //= 2
        if now - self.last_line >= self.every:
            self.last_line = now
            self._write(self.line(clock, _done(cluster), now - self.start), final=False)
        self.next = clock + self.step
        return self.next

    def finish(self, clock: int, cluster) -> None:
        """The last line (it ends the terminal's rewritten line)."""
        if not (self.wrote or self.always):
            return
        self._write(self.line(clock, _done(cluster), self.wall() - self.start, final=True),
                    final=True)

    def line(self, clock: int, done: int, elapsed: float, final: bool = False) -> str:
        parts = []
        fraction = None
        if self.horizon:
            fraction = min(clock / self.horizon, 1.0)
            parts.append(f"sim {clock / 1e6:.3f}s/{self.horizon / 1e6:.3f}s")
        else:
            parts.append(f"sim {clock / 1e6:.3f}s")
        if self.total:
            parts.append(f"{done}/{self.total} requests")
            fraction = max(fraction or 0.0, min(done / self.total, 1.0))
        else:
            parts.append(f"{done} requests")
        rate = done / elapsed if elapsed > 0 else 0.0
        parts.append(f"{rate:.0f} req/s")
        if final:
            parts.append(f"done in {elapsed:.1f}s")
        elif fraction:
            parts.append(f"ETA {duration(elapsed * (1 - fraction) / fraction)}")
        head = f"{self.label}: " + (f"{fraction * 100:3.0f}% " if fraction is not None else "")
        return head + ", ".join(parts)

    def _write(self, text: str, final: bool) -> None:
        if self.terminal:
            # Rewrite the line in place; clear what a longer previous line left.
            self.stream.write("\r" + text + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.wrote = True


def _done(cluster) -> int:
    """Requests that left the system: completed, dropped, timed out or rejected."""
    done = cluster.rejected + cluster.routing_rejections
    for inst in cluster.instances:
        c = inst.counters
        done += c.completed + c.dropped_unservable + c.timed_out
    return done


def duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def wanted(setting: bool | None, stream=None) -> bool:
    """``--progress`` / ``--no-progress`` / auto (on when the stream is a terminal)."""
    if setting is not None:
        return setting
    return _isatty(stream if stream is not None else sys.stderr)
