"""``blis sweep grid.yaml``: one base run description, a grid of changes, one result row per point.

A grid file::

    base: run.yaml                  # a run description file, or the description inline
    axes:
      policies: [rr.yaml, weighted.yaml]      # policy bundles (files or inline mappings)
      workload.rate: [10, 20, 40]             # any field of the description, by dotted path
      cluster.num_instances: [2, 4]
      seed: [1, 2]

The points are the cartesian product of the axes, in the order the axes are written (the last
varies fastest). A ``policies`` value is applied as ``--policy-config`` is over ``--config``:
the fields the bundle sets replace the base's. Every point is checked before anything runs, so a
typo in the grid costs nothing. Points run on a process pool (``--jobs``) or a Dask cluster
(``--executor dask://HOST:PORT``); each finished point is written at once (JSON Lines and CSV,
both rewritten atomically, rows in point order), so an interrupted sweep resumes with
``--resume`` and loses nothing. A point that fails is a row with its error; the others go on.
Rows hold no wall-clock figure: the same grid gives the same files whichever executor ran it.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs
import click

from blis_core.bundle import BundleError, PolicyBundle, load_bundle, merge_bundles, structure_bundle
from blis_core.files import write_atomically
from blis_core.runconfig import ConfigurationError, RunConfig
from blis_core.strictyaml import YamlError, strict_yaml

__all__ = ["Grid", "SweepPoint", "load_grid", "run_point", "run_sweep", "SweepCommands"]

POLICIES_AXIS = "policies"


@attrs.frozen
class SweepPoint:
    """One point: its index, the axis values that made it (as written in the grid) and the
    complete run description, with bundles embedded so a remote worker needs no bundle file."""

    index: int
    values: tuple[tuple[str, Any], ...]
    config: RunConfig

    @property
    def config_hash(self) -> str:
        return _digest(self.config.to_json(), 16)


@attrs.frozen
class Grid:
    base: RunConfig
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    points: tuple[SweepPoint, ...]


def _fail(source: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"{source}: {message}")


def _bundle(value: Any, folder: Path, where: str) -> PolicyBundle:
    try:
        if isinstance(value, str):
            path = Path(value) if os.path.isabs(value) else folder / value
            return load_bundle(path)
        if isinstance(value, dict):
            return structure_bundle(value, where)
    except BundleError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    raise ConfigurationError(f"{where}: expected a bundle file name or mapping, got {value!r}")


def _set(data: dict, path: list[str], value: Any, where: str) -> None:
    """Set a dotted field in a description's plain data; an unknown field is an error."""
    node = data
    for depth, name in enumerate(path):
        if not isinstance(node, dict) or name not in node:
            raise ConfigurationError(f"{where}: unknown field {'.'.join(path[:depth + 1])!r} "
                                     "of the run description")
        if depth == len(path) - 1:
            node[name] = value
        else:
            if node[name] is None:      # an optional section not set yet (workload.trace)
                node[name] = {}
            node = node[name]


def load_grid(path: str | os.PathLike) -> Grid:
    """Read and check a grid file: every point becomes a checked-in-structure description.
    Raises :class:`ConfigurationError` with one line naming the grid file and the field."""
    path = Path(path)
    source = str(path)
    try:
        data = strict_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(source, f"cannot read grid: {exc.strerror or exc}") from None
    except (YamlError, UnicodeDecodeError) as exc:
        raise _fail(source, f"not a YAML grid: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(source, "expected a mapping with base and axes")
    unknown = sorted(set(data) - {"base", "axes"})
    if unknown:
        raise _fail(source, f"{unknown[0]}: unknown field (a grid has base and axes)")
    folder = path.parent
    base_value = data.get("base")
    if isinstance(base_value, str):
        base_path = Path(base_value) if os.path.isabs(base_value) else folder / base_value
        base = RunConfig.load(base_path)
    elif isinstance(base_value, dict):
        base = RunConfig.from_dict(base_value, f"{source}: base").relative_to(folder)
    else:
        raise _fail(source, "base: expected a run description file name or mapping")
    axes_value = data.get("axes")
    if not isinstance(axes_value, dict) or not axes_value:
        raise _fail(source, "axes: expected a mapping of at least one axis to its values")
    axes = []
    for name, values in axes_value.items():
        if not isinstance(values, list) or not values:
            raise _fail(source, f"axes.{name}: expected a non-empty list of values")
        axes.append((str(name), tuple(values)))
    base_data = base.to_dict()
    points = []
    for index, combo in enumerate(itertools.product(*(values for _, values in axes))):
        data_point = json.loads(json.dumps(base_data))
        bundles = []
        for (name, _), value in zip(axes, combo):
            where = f"{source}: axes.{name}"
            if name == POLICIES_AXIS:
                bundles.append(_bundle(value, folder, where))
            else:
                _set(data_point, name.split("."), value, where)
        config = RunConfig.from_dict(data_point, f"{source}: point {index}")
        for bundle in bundles:
            config = attrs.evolve(config, policies=merge_bundles(config.policies, bundle))
        points.append(SweepPoint(index, tuple(zip((n for n, _ in axes), combo)), config))
    return Grid(base, tuple(axes), tuple(points))


# -- one point ------------------------------------------------------------------------------
def _number(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) \
        else value


def run_point(config_json: str) -> dict:
    """Run one description (as JSON, so it travels to any worker) and return its result fields,
    or ``{"status": "failed", "error": ...}``. Never raises: a failing point is data."""
    from blis_core.runner import evaluate

    # The run's warnings (catalog defaults, deprecations) are the same for every point and
    # would bury the progress lines; `blis run --config` on one point shows them.
    quiet = logging.getLogger("blis")
    saved = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        result = evaluate(RunConfig.from_json(config_json))
    except Exception as exc:  # any failure of this point, reported in its row
        message = " ".join(str(exc).split()) or type(exc).__name__
        return {"status": "failed", "error": message}
    finally:
        quiet.setLevel(saved)
    m = result.metrics
    row = {
        "status": "ok", "error": "",
        "score": _number(result.score),
        "completed": m.completed, "injected": m.injected, "rejected": m.rejected_requests,
        "timed_out": m.timed_out,
        "requests_per_sec": m.requests_per_sec, "tokens_per_sec": m.tokens_per_sec,
        "ttft_mean_us": m.ttft_us.mean, "ttft_p50_us": m.ttft_us.p50,
        "ttft_p99_us": m.ttft_us.p99, "e2e_mean_us": m.e2e_us.mean,
        "e2e_p50_us": m.e2e_us.p50, "e2e_p99_us": m.e2e_us.p99,
        "preemption_rate": m.preemption_rate, "cache_hit_rate": m.cache_hit_rate,
    }
    if result.fitness is not None:
        row.update({f"fitness_{key}": value for key, value in result.fitness.components.items()})
    anomalies = result.anomalies
    row.update({f"anomaly_{name}": getattr(anomalies, name) for name in (
        "priority_inversions", "hol_blocking_events", "rejected_requests",
        "routing_rejections", "dropped_unservable", "length_capped_requests",
        "timed_out_requests", "preemptions")})
    return row


def _digest(text: str, length: int) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:length]


# -- executors ------------------------------------------------------------------------------
class _ProcessPool:
    def __init__(self, jobs: int) -> None:
        # Imported here, as hashlib in _digest: every blis run loads this plugin module, and
        # the two take about 7 ms of its start-up.
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(max_workers=jobs)

    def run(self, work: list[tuple[int, str]]) -> Iterable[tuple[int, dict]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        futures = {self.pool.submit(run_point, text): index for index, text in work}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=futures.get):
                yield futures[future], future.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class _Dask:
    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ConfigurationError("--executor dask://: the distributed package is not "
                                     "installed (pip install \"blis[dask]\")") from None
        try:
            self.client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ConfigurationError(f"--executor: cannot reach the Dask scheduler at "
                                     f"{address}: {' '.join(str(exc).split())}") from None

    def run(self, work: list[tuple[int, str]]) -> Iterable[tuple[int, dict]]:
        from distributed import as_completed

        futures = {self.client.submit(run_point, text, key=f"blis-point-{index}-"
                                      f"{_digest(text, 12)}",
                                      pure=False): index for index, text in work}
        for future in as_completed(list(futures)):
            yield futures[future], future.result()

    def close(self) -> None:
        self.client.close()


def _executor(spec: str, jobs: int):
    if spec in ("", "process"):
        return _ProcessPool(jobs)
    if spec.startswith("dask://"):
        return _Dask("tcp://" + spec[len("dask://"):])
    raise ConfigurationError(f"--executor: expected process or dask://HOST:PORT, got {spec!r}")


# -- results --------------------------------------------------------------------------------
def _row(point: SweepPoint, result: dict) -> dict:
    row: dict[str, Any] = {"point": point.index, "config_hash": point.config_hash}
    for name, value in point.values:
        row[name] = value if not isinstance(value, (dict, list)) else json.dumps(value,
                                                                                  sort_keys=True)
    row.update(result)
    return row


def _csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in columns})
    return out.getvalue()


def _write(prefix: str, rows: dict[int, dict]) -> None:
    ordered = [rows[index] for index in sorted(rows)]
    write_atomically(prefix + ".jsonl", "".join(json.dumps(row, sort_keys=False) + "\n"
                                                for row in ordered))
    write_atomically(prefix + ".csv", _csv(ordered))


def _previous_rows(prefix: str, grid: Grid) -> dict[int, dict]:
    """Rows of an earlier run of this grid that can be kept: finished, same description."""
    path = Path(prefix + ".jsonl")
    if not path.exists():
        return {}
    hashes = {point.index: point.config_hash for point in grid.points}
    kept = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except ValueError:
            raise ConfigurationError(f"--resume: {path}: line {number} is not JSON") from None
        index = row.get("point")
        if row.get("status") == "ok" and hashes.get(index) == row.get("config_hash"):
            kept[index] = row
    return kept


def _label(point: SweepPoint) -> str:
    return ", ".join(f"{name}={json.dumps(value) if isinstance(value, (dict, list)) else value}"
                     for name, value in point.values)


def run_sweep(grid: Grid, prefix: str, *, jobs: int = 1, executor: str = "process",
              resume: bool = False, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Run every point not already done; return the rows in point order."""
    rows = _previous_rows(prefix, grid) if resume else {}
    todo = [point for point in grid.points if point.index not in rows]
    by_index = {point.index: point for point in grid.points}
    total = len(grid.points)
    say = progress or (lambda line: None)
    if rows:
        say(f"resuming: {len(rows)} of {total} points already done")
    if not todo:
        _write(prefix, rows)
        return [rows[index] for index in sorted(rows)]
    runner = _executor(executor, jobs)
    start = time.monotonic()
    finished = 0
    try:
        for index, result in runner.run([(p.index, p.config.to_json()) for p in todo]):
            rows[index] = _row(by_index[index], result)
            _write(prefix, rows)
            finished += 1
            status = (f"score {result['score']:.6g}" if result.get("score") is not None
                      else result["status"]) if result["status"] == "ok" else \
                f"FAILED: {result['error']}"
            say(f"[{len(rows)}/{total}] point {index} "
                f"({_label(by_index[index])}): {status} "
                f"({_pace(time.monotonic() - start, finished, len(todo))})")
    finally:
        runner.close()
    return [rows[index] for index in sorted(rows)]


def _pace(elapsed: float, finished: int, todo: int) -> str:
    """Elapsed time, points per minute and the ETA of the points still to run."""
    from blis_core.progress import duration

    rate = finished / elapsed if elapsed > 0 else 0.0
    text = f"{elapsed:.1f}s, {rate * 60:.3g} points/min"
    if finished < todo and rate > 0:
        text += f", ETA {duration((todo - finished) / rate)}"
    return text


# -- the command ----------------------------------------------------------------------------
@click.command("sweep")
@click.argument("grid_file", type=click.Path(dir_okay=False))
@click.option("--jobs", "-j", default=os.cpu_count() or 1, type=click.IntRange(1, 1024),
              help="Worker processes of the process pool (default: one per core).")
@click.option("--executor", default="process",
              help="process (a local process pool) or dask://HOST:PORT (a Dask scheduler).")
@click.option("--output", "-o", default="",
              help="Results prefix: PREFIX.jsonl and PREFIX.csv (default: next to the grid, "
                   "GRID.results).")
@click.option("--resume", is_flag=True, help="Keep the finished rows of an earlier run; run the rest.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def sweep_command(grid_file: str, jobs: int, executor: str, output: str, resume: bool,
                  quiet: bool) -> None:
    """Run a grid of run descriptions (policies, weights, rates, instance counts, seeds)."""
    grid = load_grid(grid_file)
    prefix = output or str(Path(grid_file).with_suffix("")) + ".results"
    if not Path(prefix).parent.is_dir():
        raise ConfigurationError(f"--output: no such folder {Path(prefix).parent}")
    say = None if quiet else (lambda line: click.echo(line, err=True))
    rows = run_sweep(grid, prefix, jobs=jobs, executor=executor, resume=resume, progress=say)
    failed = sum(1 for row in rows if row["status"] != "ok")
    click.echo(json.dumps({"points": len(rows), "failed": failed,
                           "results": [prefix + ".jsonl", prefix + ".csv"]}))
    if failed and not quiet:
        click.echo(f"{failed} of {len(rows)} points failed; their rows hold the error",
                   err=True)


class SweepCommands:
    """blis sweep GRID: run a grid of run descriptions on a process pool or a Dask cluster."""

    name = "sweep"

    @staticmethod
    def command() -> click.Command:
        return sweep_command

