"""The time series of a run: every instance sampled at a fixed simulated interval.

Sampling reads state and never schedules anything: the cluster loop calls :meth:`TimeSeries.
sample_until` when the clock of the next popped event reaches the next sample time, so a
sample at ``t`` sees exactly the state after every event before ``t`` and before any event at
``t`` (nothing happens between two events). No event is pushed, so event order, and every
result, is the same with or without sampling. After the loop, :meth:`TimeSeries.finish` adds
the samples up to the end of the run (the first sample time after the last event, or the
horizon), so the last row holds the final counts.

One row per sample time and instance (docs/report.md has the schema). ``arrivals``,
``completions`` and ``rejections`` are cumulative: per instance, requests routed to it, requests
it completed and requests it dropped (unservable or timed out); in the ``cluster`` row,
requests that arrived, completed (the instances' completions summed, so with P/D pools a
split request counts once per half) and were rejected (admission, tenant-budget shed, routing,
plus the instances' drops).
"""

from __future__ import annotations

import csv
import io
import json

COLUMNS = ("time_us", "instance", "queue_depth", "batch_size", "kv_gpu_utilization",
           "kv_cpu_utilization", "arrivals", "completions", "rejections")
CLUSTER = "cluster"

# Every sample of a very long idle stretch is the same row; past this many sample times the
# series refuses to grow (a far too small interval for the run would exhaust memory).
MAX_SAMPLES = 1_000_000


class TimeSeriesError(ValueError):
    """A time-series file blis cannot read; the message is one line."""


class TimeSeries:
    """Samples of one run; ``rows`` are tuples in :data:`COLUMNS` order."""

    def __init__(self, interval: int) -> None:
        if interval <= 0:
            raise ValueError(f"--timeseries-interval must be > 0, got {interval}")
        self.interval = interval
        self.next = 0                      # the next sample time
        self.rows: list[tuple] = []
        self.truncated = False

    def sample_until(self, time: int, cluster) -> int:
        """Take every sample due at or before ``time``; return the next sample time."""
        interval = self.interval
        t = self.next
        if t > time:
            return t
        rows = self._rows(cluster)
        while t <= time:
            if len(self.rows) >= MAX_SAMPLES * len(rows):
                self.truncated = True
                t = time + interval
                break
            self.rows.extend((t,) + row for row in rows)
            t += interval
        self.next = t
        return t

    def finish(self, cluster, last_event: int, horizon: int) -> None:
        """The samples after the last event: up to the first sample time after it, never
        beyond the horizon."""
        end = min(last_event + self.interval, horizon)
        if end >= self.next:
            self.sample_until(end, cluster)

    @staticmethod
    def _rows(cluster) -> list[tuple]:
        out = []
        arrived_total = completed_total = dropped_total = 0
        queued_total = running_total = 0
        gpu_used = gpu_total = cpu_used = cpu_total = 0
        for inst in cluster.instances:
            kv = inst.kv
            used = kv.used_blocks()
            total = kv.total_blocks
            cpu = getattr(kv, "cpu", None)
            in_cpu = len(cpu) if cpu is not None else 0
            cpu_capacity = cpu.capacity if cpu is not None else 0
            c = inst.counters
            queued = len(inst.wait)
            running = len(inst.running) if inst.running else 0
            dropped = c.dropped_unservable + c.timed_out
            out.append((inst.id, queued, running, used / total if total > 0 else 0.0,
                        in_cpu / cpu_capacity if cpu_capacity > 0 else 0.0,
                        inst.routed, c.completed, dropped))
            queued_total += queued
            running_total += running
            gpu_used += used
            gpu_total += total
            cpu_used += in_cpu
            cpu_total += cpu_capacity
            arrived_total += inst.routed
            completed_total += c.completed
            dropped_total += dropped
        rejected = cluster.rejected + cluster.routing_rejections + dropped_total
        out.append((CLUSTER, queued_total, running_total,
                    gpu_used / gpu_total if gpu_total > 0 else 0.0,
                    cpu_used / cpu_total if cpu_total > 0 else 0.0,
                    cluster.arrivals, completed_total, rejected))
        return out

    # -- files --------------------------------------------------------------------------------
    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows:
            writer.writerow(_cells(row))
        return buffer.getvalue()

    def to_json(self) -> str:
        data = {"interval_us": self.interval, "columns": list(COLUMNS),
                "rows": [_cells(row) for row in self.rows]}
        return json.dumps(data, separators=(",", ":")) + "\n"

    def render(self, path: str) -> str:
        """The file text for ``path``: JSON for a ``.json`` name, CSV otherwise."""
        return self.to_json() if str(path).lower().endswith(".json") else self.to_csv()


def _cells(row: tuple) -> list:
    # Utilizations rounded to 6 digits: the files stay small and byte-stable.
    return [row[0], row[1], row[2], row[3], round(row[4], 6), round(row[5], 6),
            row[6], row[7], row[8]]


def read_timeseries(path: str) -> list[dict]:
    """Rows of a ``--timeseries`` file (CSV or JSON) as dicts keyed by :data:`COLUMNS`."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise TimeSeriesError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TimeSeriesError(f"{path}: not a blis time series (not UTF-8 text)") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
            columns, rows = data["columns"], data["rows"]
        except (ValueError, KeyError, TypeError):
            raise TimeSeriesError(f"{path}: not a blis time series (JSON without "
                                  "columns and rows)") from None
        header = list(columns)
    else:
        reader = list(csv.reader(io.StringIO(text)))
        if not reader:
            raise TimeSeriesError(f"{path}: not a blis time series (empty file)")
        header, rows = reader[0], reader[1:]
    if tuple(header) != COLUMNS:
        raise TimeSeriesError(f"{path}: not a blis time series (columns {', '.join(header)}; "
                              f"expected {', '.join(COLUMNS)})")
    out = []
    for number, row in enumerate(rows, start=2):
        if len(row) != len(COLUMNS):
            raise TimeSeriesError(f"{path}: row {number}: expected {len(COLUMNS)} cells")
        try:
            out.append({"time_us": int(row[0]), "instance": str(row[1]),
                        "queue_depth": int(row[2]), "batch_size": int(row[3]),
                        "kv_gpu_utilization": float(row[4]),
                        "kv_cpu_utilization": float(row[5]), "arrivals": int(row[6]),
                        "completions": int(row[7]), "rejections": int(row[8])})
        except (TypeError, ValueError):
            raise TimeSeriesError(f"{path}: row {number}: not a number where one belongs") \
                from None
    return out
