"""``blis report RESULTS.json [B.json] [--timeseries ts.csv] -o report.html``: one HTML page.

The page is a single self-contained file (figures are PNGs embedded as data URIs, no script,
nothing fetched) built from what a run leaves behind: the ``--metrics-path`` results file
(cluster summary plus per-request records) and, optionally, its ``--timeseries`` file. Two or
more results files are overlaid in every figure and side by side in every table, to compare
policies. Figures are drawn with matplotlib's Agg backend (``pip install "blis[report]"``).

What the results file cannot say is left out rather than guessed: the ITL figures show each
request's mean ITL (the file keeps no per-token ITL), and anomalies that only the live run
knows (priority inversions, HOL blocking) are not in the file; rejections come from the time
series when one is given.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Sequence

import attrs
import click

from blis_core.evaluation import (FITNESS_KEYS, Distribution, FitnessError, compute_fitness,
                                  empty_metrics, fitness_components, parse_fitness_weights)
from blis_core.files import write_atomically
from blis_core.metrics import jain_fairness
from blis_core.runconfig import ConfigurationError
from blis_core.timeseries import CLUSTER, TimeSeriesError, read_timeseries

SUMMARY_KEYS = ("instance_id", "completed_requests", "injected_requests")
# Figure size (inches) and resolution: legible in a browser at 100% without being heavy.
DPI = 96


class ReportError(ConfigurationError):
    """Input ``blis report`` refuses; one line, exit code 2."""


@attrs.frozen
class Run:
    """One results file (and its time series) as the report reads it."""

    label: str
    summary: dict
    requests: list
    timeseries: list | None

    def values(self, key: str) -> list[float]:
        """Per-request values in ms: TTFT of every request with a first token, ITL and E2E of
        every completed request."""
        if key == "ttft_ms":
            return [r["ttft_ms"] for r in self.requests if r.get("ttft_ms", 0) > 0]
        return [r[key] for r in self.requests if r.get("e2e_ms", 0) > 0]


def load_results(path: str, label: str, timeseries: str | None) -> Run:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such results file") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError):
        raise ReportError(f"{path}: not a blis results file (not JSON; give the file "
                          "--metrics-path wrote)") from None
    if not isinstance(data, dict) or any(key not in data for key in SUMMARY_KEYS):
        raise ReportError(f"{path}: not a blis results file (no {'/'.join(SUMMARY_KEYS)}; "
                          "give the file --metrics-path wrote)")
    requests = data.get("requests", [])
    if not isinstance(requests, list) or any(
            not isinstance(r, dict) or not isinstance(r.get("ttft_ms"), (int, float))
            for r in requests):
        raise ReportError(f"{path}: not a blis results file (malformed requests records)")
    series = None
    if timeseries:
        try:
            series = read_timeseries(timeseries)
        except TimeSeriesError as exc:
            raise ReportError(f"--timeseries: {exc}") from None
    return Run(label, data, requests, series)


# -- numbers --------------------------------------------------------------------------------
def _stats(values: Sequence[float]) -> Distribution:
    return Distribution.of(values)


def fitness_of(run: Run, weights: dict | None):
    """Every fitness component (and the score, with weights) from the results file: the
    per-request latencies and the cluster's rates, as blis run computes them."""
    us = {key: _stats([v * 1000.0 for v in run.values(key)]) for key in ("ttft_ms", "e2e_ms")}
    metrics = attrs.evolve(empty_metrics(), ttft_us=us["ttft_ms"], e2e_us=us["e2e_ms"],
                           requests_per_sec=float(run.summary.get("responses_per_sec", 0.0)),
                           tokens_per_sec=float(run.summary.get("tokens_per_sec", 0.0)))
    if weights:
        result = compute_fitness(metrics, weights)
        return result.score, fitness_components(metrics)
    return None, fitness_components(metrics)


def _groups(run: Run, field: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in run.requests:
        groups.setdefault(r.get(field) or "default", []).append(r)
    return dict(sorted(groups.items()))


def routing_counts(run: Run) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in run.requests:
        target = r.get("handled_by")
        if target:
            counts[target] = counts.get(target, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: _instance_key(item[0])))


def _instance_key(name: str):
    head, _, tail = name.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (name, -1)


def anomalies_of(run: Run) -> dict[str, int | None]:
    s = run.summary
    out = {"preemptions": s.get("preemption_count", 0),
           "dropped_unservable": s.get("dropped_unservable", 0),
           "length_capped_requests": s.get("length_capped_requests", 0),
           "timed_out_requests": s.get("timed_out_requests", 0),
           "kv_allocation_failures": s.get("kv_allocation_failures", 0),
           "still_queued": s.get("still_queued", 0),
           "still_running": s.get("still_running", 0)}
    rejected = None
    if run.timeseries:
        last = [row for row in run.timeseries if row["instance"] == CLUSTER]
        if last:
            # Offered to the cluster but never injected into an instance.
            rejected = last[-1]["arrivals"] - s["injected_requests"]
    out["rejected_before_an_instance"] = rejected
    return out


# -- figures --------------------------------------------------------------------------------
def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ReportError('blis report needs matplotlib: pip install "blis[report]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
                         "figure.dpi": DPI})
    return plt


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight",
                metadata={"Software": None})
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


LATENCIES = (("ttft_ms", "TTFT"), ("itl_ms", "ITL (per-request mean)"), ("e2e_ms", "E2E"))


def latency_figures(plt, runs: list[Run]) -> tuple[str, str]:
    import numpy as np

    cdf, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (key, title) in zip(axes, LATENCIES):
        for run in runs:
            values = np.sort(np.asarray(run.values(key), dtype=float))
            if values.size:
                ax.step(values, np.arange(1, values.size + 1) / values.size, where="post",
                        label=run.label)
        ax.set_title(f"{title} CDF")
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction of requests")
        ax.set_ylim(0, 1.02)
        if len(runs) > 1:
            ax.legend(loc="lower right")
    hist, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (key, title) in zip(axes, LATENCIES):
        every = [v for run in runs for v in run.values(key)]
        bins = np.histogram_bin_edges(every, bins=40) if every else 10
        for run in runs:
            values = run.values(key)
            if values:
                ax.hist(values, bins=bins, alpha=0.6 if len(runs) > 1 else 0.9,
                        label=run.label)
        ax.set_title(f"{title} histogram")
        ax.set_xlabel("ms")
        ax.set_ylabel("requests")
        if len(runs) > 1:
            ax.legend(loc="upper right")
    return _png(cdf), _png(hist)


def routing_figure(plt, runs: list[Run]) -> str | None:
    counts = [routing_counts(run) for run in runs]
    names = sorted({name for c in counts for name in c}, key=_instance_key)
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) * len(runs) + 2), 3.0))
    width = 0.8 / len(runs)
    for i, (run, c) in enumerate(zip(runs, counts)):
        ax.bar([j + i * width for j in range(len(names))], [c.get(n, 0) for n in names],
               width=width, label=run.label)
    ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(names))], names,
                  rotation=30 if len(names) > 6 else 0)
    ax.set_ylabel("requests handled")
    ax.set_title("Routing distribution")
    if len(runs) > 1:
        ax.legend()
    return _png(fig)


def timeseries_figure(plt, run: Run) -> str | None:
    rows = run.timeseries
    if not rows:
        return None
    instances = sorted({r["instance"] for r in rows if r["instance"] != CLUSTER},
                       key=_instance_key)
    with_cpu = any(r["kv_cpu_utilization"] > 0 for r in rows)
    panels = [("queue_depth", "Queue depth (waiting requests)", ""),
              ("batch_size", "Running batch size", ""),
              ("kv_gpu_utilization", "KV utilization, GPU", "")]
    if with_cpu:
        panels.append(("kv_cpu_utilization", "KV utilization, CPU tier", ""))
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(12, 2.3 * (len(panels) + 1)),
                             sharex=True)
    for ax, (key, title, _) in zip(axes, panels):
        for name in instances:
            mine = [r for r in rows if r["instance"] == name]
            ax.plot([r["time_us"] / 1e6 for r in mine], [r[key] for r in mine], lw=1,
                    label=name)
        ax.set_title(f"{title} per instance ({run.label})")
        if key.startswith("kv_"):
            ax.set_ylim(0, 1.02)
        if len(instances) <= 16:
            ax.legend(loc="upper right", fontsize=7, ncol=min(len(instances), 8))
    ax = axes[-1]
    cluster = [r for r in rows if r["instance"] == CLUSTER]
    times = [r["time_us"] / 1e6 for r in cluster]
    for key in ("arrivals", "completions", "rejections"):
        ax.plot(times, [r[key] for r in cluster], lw=1.2, label=key)
    ax.set_title(f"Cluster: cumulative arrivals, completions, rejections ({run.label})")
    ax.set_xlabel("simulated time (s)")
    ax.legend(loc="upper left")
    return _png(fig)


# -- HTML -----------------------------------------------------------------------------------
def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        # Four significant digits, but never an exponent for a number a person reads whole.
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(src: str | None, alt: str) -> str:
    if src is None:
        return f"<p class=note>{html.escape(alt)}: no data.</p>"
    return f'<img src="{src}" alt="{html.escape(alt)}">'


SUMMARY_ROWS = (("completed_requests", "completed"), ("injected_requests", "injected"),
                ("still_queued", "still queued"), ("still_running", "still running"),
                ("vllm_estimated_duration_s", "duration (s)"),
                ("responses_per_sec", "responses/s"), ("tokens_per_sec", "tokens/s"),
                ("ttft_mean_ms", "TTFT mean (ms)"), ("ttft_p99_ms", "TTFT p99 (ms)"),
                ("itl_mean_ms", "ITL mean (ms)"), ("itl_p99_ms", "ITL p99 (ms)"),
                ("e2e_mean_ms", "E2E mean (ms)"), ("e2e_p99_ms", "E2E p99 (ms)"),
                ("scheduling_delay_p99_ms", "scheduling delay p99 (ms)"))


def _side_by_side(runs: list[Run], rows: list[tuple[str, list]]) -> str:
    return _table(["", *[run.label for run in runs]], [[name, *values] for name, values in rows])


def _group_section(runs: list[Run], field: str) -> str:
    rows = []
    for run in runs:
        for name, records in _groups(run, field).items():
            done = [r for r in records if r.get("e2e_ms", 0) > 0]
            ttft = _stats([r["ttft_ms"] for r in records if r.get("ttft_ms", 0) > 0])
            e2e = _stats([r["e2e_ms"] for r in done])
            rows.append([run.label, name, len(records), len(done), ttft.mean, ttft.p99,
                         e2e.mean, e2e.p99, sum(r.get("num_decode_tokens", 0) for r in done)])
    headers = ["run", field.replace("_", " "), "requests", "completed", "TTFT mean (ms)",
               "TTFT p99 (ms)", "E2E mean (ms)", "E2E p99 (ms)", "output tokens (completed)"]
    text = _table(headers, rows)
    if field == "tenant_id":
        fairness = []
        for run in runs:
            groups = _groups(run, field)
            if len(groups) > 1:
                tokens = [sum(r.get("num_decode_tokens", 0) for r in g if r.get("e2e_ms", 0) > 0)
                          for g in groups.values()]
                fairness.append(f"{html.escape(run.label)}: {jain_fairness(tokens):.4f}")
        if fairness:
            text += ("<p>Jain fairness over tenants' completed output tokens: "
                     + "; ".join(fairness) + "</p>")
    return text


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
img { max-width: 100%; display: block; margin: .5em 0; }
.note { color: #666; font-size: .9em; }
nav a { margin-right: 1em; }
"""


def render_report(runs: list[Run], weights: dict | None, title: str) -> str:
    plt = _pyplot()
    cdf, hist = latency_figures(plt, runs)
    routing = routing_figure(plt, runs)
    series = [(run, timeseries_figure(plt, run)) for run in runs]
    parts = [f"<h1>{html.escape(title)}</h1>",
             "<nav>" + "".join(f'<a href="#{anchor}">{name}</a>' for anchor, name in (
                 ("summary", "Summary"), ("latency", "Latency"), ("slo", "Per SLO class"),
                 ("tenants", "Per tenant"), ("routing", "Routing"),
                 ("timeseries", "Over time"), ("anomalies", "Anomalies"),
                 ("fitness", "Fitness"))) + "</nav>",
             '<section id="summary"><h2>Summary</h2>',
             _side_by_side(runs, [(name, [run.summary.get(key) for run in runs])
                                  for key, name in SUMMARY_ROWS]), "</section>",
             '<section id="latency"><h2>Latency</h2>', _img(cdf, "Latency CDFs"),
             _img(hist, "Latency histograms"),
             "<p class=note>ITL is each completed request's mean inter-token latency; the "
             "results file keeps no per-token ITL.</p></section>",
             '<section id="slo"><h2>Per SLO class</h2>', _group_section(runs, "slo_class"),
             "</section>",
             '<section id="tenants"><h2>Per tenant</h2>', _group_section(runs, "tenant_id"),
             "</section>",
             '<section id="routing"><h2>Routing distribution</h2>',
             _img(routing, "Routing distribution")]
    counts = [routing_counts(run) for run in runs]
    names = sorted({n for c in counts for n in c}, key=_instance_key)
    parts.append(_side_by_side(runs, [(n, [c.get(n, 0) for c in counts]) for n in names]))
    parts.append("</section>")
    parts.append('<section id="timeseries"><h2>Over time</h2>')
    if not any(run.timeseries for run in runs):
        parts.append("<p class=note>No time series: run with <code>--timeseries ts.csv</code> "
                     "and give it to <code>blis report --timeseries ts.csv</code>.</p>")
    for run, figure in series:
        if run.timeseries:
            parts.append(_img(figure, f"Queue depth and KV utilization over time ({run.label})"))
    parts.append("</section>")
    anomalies = [anomalies_of(run) for run in runs]
    parts += ['<section id="anomalies"><h2>Anomalies</h2>',
              _side_by_side(runs, [(key.replace("_", " "), [a[key] for a in anomalies])
                                   for key in anomalies[0]]),
              "<p class=note>Priority inversions and HOL blocking are counted by the live run "
              "(<code>blis run</code> prints them); rejections need the time series.</p>",
              "</section>"]
    fitness = [fitness_of(run, weights) for run in runs]
    rows = []
    if weights:
        rows.append(("score (" + ",".join(f"{k}:{_fmt(w)}" for k, w in sorted(weights.items()))
                     + ")", [score for score, _ in fitness]))
    rows += [(key, [components[key] for _, components in fitness]) for key in FITNESS_KEYS]
    parts += ['<section id="fitness"><h2>Fitness</h2>', _side_by_side(runs, rows),
              "<p class=note>Components normalized to [0, 1] as <code>--fitness-weights</code> "
              "does; higher is better.</p></section>"]
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<link rel="icon" href="data:,">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


# -- the command ----------------------------------------------------------------------------
@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--timeseries", "timeseries", multiple=True,
              help="A --timeseries file of the run (repeat, in the order of RESULTS).")
@click.option("--label", "labels", multiple=True,
              help="Name of a run in legends and tables (repeat; default: the file name).")
@click.option("--fitness-weights", default="",
              help="Also show the fitness score under these weights (key:weight,...).")
@click.option("--title", default="blis report", help="Title of the page.")
@click.option("--output", "-o", default="report.html", help="The HTML file to write.")
def report_command(results, timeseries, labels, fitness_weights, title, output) -> None:
    """Write one self-contained HTML report of one run, or of several runs overlaid."""
    if len(timeseries) > len(results):
        raise ReportError(f"--timeseries: {len(timeseries)} files for {len(results)} results "
                          "files (give them in the order of RESULTS)")
    if len(labels) > len(results):
        raise ReportError(f"--label: {len(labels)} labels for {len(results)} results files")
    weights = None
    if fitness_weights:
        try:
            weights = parse_fitness_weights(fitness_weights)
            compute_fitness(empty_metrics(), weights)
        except FitnessError as exc:
            raise ReportError(f"--fitness-weights: {exc}") from None
    folder = os.path.dirname(os.path.abspath(output))
    if os.path.isdir(output) or not os.path.isdir(folder):
        raise ReportError(f"--output: cannot write {output}: "
                          + ("is a directory" if os.path.isdir(output)
                             else f"no such directory {folder}"))
    _pyplot()     # a missing matplotlib is one line before any file is read
    runs = []
    for i, path in enumerate(results):
        label = labels[i] if i < len(labels) else Path(path).stem
        runs.append(load_results(path, label, timeseries[i] if i < len(timeseries) else None))
    text = render_report(runs, weights, title)
    try:
        write_atomically(output, text)
    except OSError as exc:
        raise ReportError(f"--output: cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"report written to {output}", err=True)


class ReportCommand:
    """blis report RESULTS.json: an HTML report with plots (matplotlib, the report extra)."""

    name = "report"

    @staticmethod
    def command() -> click.Command:
        return report_command
