"""``servegen_data{path, span_start, span_end}``: clients from a ServeGen data directory.

Upstream's ``loadServeGenData`` at 4e179804 (cluster-policies.md §6.2-6.3). A directory holds,
per chunk ``<id>``:

- ``chunk-<id>-trace.csv``: rows ``start_time_s, rate_req_per_s, cv, pattern[, ...]`` (no
  header; further columns are ignored). Every row must have as many fields as the first one;
  a row with fewer than 4 fields or a non-numeric start, rate or cv is skipped with a warning.
- ``chunk-<id>-dataset.json``: ``{"<window start s>": {"input_tokens": "<pdf>",
  "output_tokens": "<pdf>"}, ...}`` where a pdf is a Python dict literal ``"{100: 0.5, 200:
  0.5}"`` (token count: probability).

Every chunk with a positive rate inside the span becomes one client, in file-name order:

- id ``servegen-chunk-<id>``, tenant ``chunk-<id>``;
- ``rate_fraction`` = the chunk's highest rate in ``[span_start, span_end)`` seconds (the first
  such row on ties; 0 bounds mean unbounded); a chunk with none is left out;
- arrival = that row's pattern when it is Gamma or Weibull (any case), with the row's cv, else
  Poisson;
- input and output lengths = ``empirical`` over the first dataset window (keys in string order)
  inside the span whose two pdfs are both non-empty.

Loading draws no random numbers: the clients then generate exactly like clients written in the
spec, so the RNG order is upstream's. Paths are relative to the working directory, as upstream.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import logging
import math
import os
import re

from blis_workloads.spec import ArrivalSpec, ClientSpec, DistSpec, ServeGenDataSpec, WorkloadError

__all__ = ["go_parse_float", "load_servegen_clients", "parse_servegen_pdf"]

log = logging.getLogger("blis.workload")

_TRACE_PATTERN = "chunk-*-trace.csv"
_INT64_MIN = -(1 << 63)

# Go's strconv.ParseFloat syntax: decimal with optional exponent (digits may be separated by
# single underscores), hexadecimal with a binary exponent, and the special values.
_DECIMAL = re.compile(r"[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)"
                      r"(?:[eE][+-]?\d(?:_?\d)*)?\Z", re.ASCII)
_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F](?:_?[0-9a-fA-F])*(?:\.[0-9a-fA-F]*)?"
                  r"|\.[0-9a-fA-F]+)[pP][+-]?\d+\Z", re.ASCII)
_SPECIAL = re.compile(r"[+-]?(?:inf|infinity)\Z|nan\Z", re.IGNORECASE)


def go_parse_float(text: str) -> float | None:
    """Go's ``strconv.ParseFloat(text, 64)``; None where Go returns an error (bad syntax, or a
    finite literal that overflows to infinity)."""
    if _SPECIAL.match(text):
        return float(text)
    if _HEX.match(text):
        value = float.fromhex(text.replace("_", ""))
    elif _DECIMAL.match(text):
        value = float(text.replace("_", ""))
    else:
        return None
    return None if math.isinf(value) else value


def _go_int(x: float) -> int:
    """Go's ``int(x)`` on amd64: truncation; NaN and out-of-range values give MinInt64."""
    if not math.isfinite(x) or not -9.223372036854775808e18 <= x < 9.223372036854775808e18:
        return _INT64_MIN
    return int(x)


def parse_servegen_pdf(text: str) -> dict[int, float]:
    """A ServeGen pdf string ``"{100: 0.5, 200.0: 0.3,}"`` → ``{100: 0.5, 200: 0.3}``.

    Keys are parsed as floats and truncated (Python writes ``200.0``); a repeated key keeps the
    last value; empty pairs (a trailing comma) are ignored."""
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")) or len(s) < 2:
        raise WorkloadError("expected dict string starting with '{' and ending with '}', "
                            f"got: {s[:40]}")
    s = s[1:-1].strip()
    if not s:
        raise WorkloadError("empty PDF dictionary")
    pdf: dict[int, float] = {}
    for pair in s.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key_text, sep, value_text = pair.partition(":")
        if not sep:
            raise WorkloadError(f"invalid key:value pair: {json.dumps(pair)}")
        key_text, value_text = key_text.strip(), value_text.strip()
        key = go_parse_float(key_text)
        if key is None:
            raise WorkloadError(f"invalid key {json.dumps(key_text)}")
        value = go_parse_float(value_text)
        if value is None:
            raise WorkloadError(f"invalid value {json.dumps(value_text)} for key {_go_int(key)}")
        pdf[_go_int(key)] = value
    if not pdf:
        raise WorkloadError("no valid entries in PDF dictionary")
    return pdf


def _trace_rows(path: str) -> list[tuple[float, float, float, str]]:
    """The parsable rows ``(start_s, rate, cv, pattern)`` of a chunk's trace CSV."""
    try:
        handle = open(path, newline="", encoding="utf-8", errors="replace")
    except OSError as exc:
        raise WorkloadError(f"opening trace: {exc.strerror or exc}: {path}") from None
    rows = []
    skipped = 0
    width = None
    with handle:
        reader = csv.reader(handle, strict=True)
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except (csv.Error, OSError) as exc:
                raise WorkloadError(f"reading trace CSV: line {reader.line_num}: {exc}") from None
            if not record:
                continue                # Go's reader skips empty lines
            # Go's csv.Reader fixes the field count from the first record.
            if width is None:
                width = len(record)
            elif len(record) != width:
                raise WorkloadError(f"reading trace CSV: record on line {reader.line_num}: "
                                    f"wrong number of fields ({len(record)}, expected {width})")
            if len(record) < 4:
                skipped += 1
                continue
            start, rate, cv = (go_parse_float(field.strip()) for field in record[:3])
            if start is None or rate is None or cv is None:
                skipped += 1
                continue
            rows.append((start, rate, cv, record[3].strip()))
    if skipped:
        log.warning("parseServeGenTrace: %d rows in %s were skipped (short rows or parse "
                    "errors)", skipped, path)
    return rows


def _in_span(start_s: float, sg: ServeGenDataSpec) -> bool:
    if sg.span_start > 0 and start_s < float(sg.span_start):
        return False
    if sg.span_end > 0 and start_s >= float(sg.span_end):
        return False
    return True


def _dataset_pdfs(path: str, sg: ServeGenDataSpec) -> tuple[dict[int, float], dict[int, float]]:
    """The input and output pdfs of the first usable dataset window inside the span."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise WorkloadError(f"reading dataset: {exc.strerror or exc}: {path}") from None

    def reject_constant(name: str):
        raise ValueError(f"invalid JSON value {name}")

    try:
        dataset = json.loads(data, parse_constant=reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"parsing dataset JSON: {exc}") from None
    # Upstream decodes into map[string]map[string]string: anything else is an error, null is
    # an empty map or string.
    if dataset is None:
        dataset = {}
    if not isinstance(dataset, dict):
        raise WorkloadError("parsing dataset JSON: expected an object of windows")
    for key, window in dataset.items():
        if window is not None and not (isinstance(window, dict) and all(
                value is None or isinstance(value, str) for value in window.values())):
            raise WorkloadError(f"parsing dataset JSON: window {json.dumps(key)}: expected an "
                                "object of strings")

    input_text = output_text = ""
    for key in sorted(dataset):
        start = go_parse_float(key)
        if start is None:
            log.warning("loadServeGenDataset: skipping non-numeric key %s", json.dumps(key))
            continue
        if not _in_span(start, sg):
            continue
        window = dataset[key] or {}
        input_text = window.get("input_tokens") or ""
        output_text = window.get("output_tokens") or ""
        if input_text not in ("", "{}") and output_text not in ("", "{}"):
            break
    if input_text in ("", "{}") or output_text in ("", "{}"):
        raise WorkloadError("no valid PDF windows found in dataset")
    try:
        inputs = parse_servegen_pdf(input_text)
    except WorkloadError as exc:
        raise WorkloadError(f"parsing input PDF: {exc}") from None
    try:
        outputs = parse_servegen_pdf(output_text)
    except WorkloadError as exc:
        raise WorkloadError(f"parsing output PDF: {exc}") from None
    return inputs, outputs


def _empirical(pdf: dict[int, float]) -> DistSpec:
    # Sorted keys: the parameter order never depends on the file's order.
    return DistSpec("empirical", {str(k): pdf[k] for k in sorted(pdf)})


def _chunk_client(chunk_id: str, trace_path: str, dataset_path: str,
                  sg: ServeGenDataSpec) -> ClientSpec | None:
    best = None
    for row in _trace_rows(trace_path):
        if not _in_span(row[0], sg):
            continue
        if row[1] > (best[1] if best is not None else 0.0):
            best = row
    if best is None:
        return None                     # inactive in the span
    inputs, outputs = _dataset_pdfs(dataset_path, sg)
    arrival = ArrivalSpec("poisson")
    process = best[3].lower()
    if process in ("gamma", "weibull"):
        arrival = ArrivalSpec(process, best[2])
    return ClientSpec(id=f"servegen-chunk-{chunk_id}", tenant_id=f"chunk-{chunk_id}",
                      rate_fraction=best[1], arrival=arrival,
                      input_distribution=_empirical(inputs),
                      output_distribution=_empirical(outputs))


def load_servegen_clients(sg: ServeGenDataSpec) -> list[ClientSpec]:
    """One client per active chunk of ``sg.path``, in file-name order; ``WorkloadError`` naming
    the chunk and the problem otherwise."""
    directory = sg.path
    try:
        names = os.listdir(directory or ".")
    except OSError:
        names = []                      # like a glob over a missing directory: no match
    traces = sorted(os.path.join(directory, name) for name in names
                    if fnmatch.fnmatchcase(name, _TRACE_PATTERN))
    if not traces:
        raise WorkloadError(f"no {_TRACE_PATTERN} files found in {directory}")
    clients = []
    for trace_path in traces:
        chunk_id = os.path.basename(trace_path)[len("chunk-"):-len("-trace.csv")]
        dataset_path = os.path.join(directory, f"chunk-{chunk_id}-dataset.json")
        try:
            client = _chunk_client(chunk_id, trace_path, dataset_path, sg)
        except WorkloadError as exc:
            raise WorkloadError(f"loading chunk {chunk_id}: {exc}") from None
        if client is not None:
            clients.append(client)
    if not clients:
        raise WorkloadError(f"no valid chunks found in {directory}")
    return clients
