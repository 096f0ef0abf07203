"""TraceV2 files: a YAML header plus a CSV of one row per request (upstream ``tracev2.go``).

``blis run --trace-output PREFIX`` writes ``PREFIX.yaml`` and ``PREFIX.csv`` after the run: every
request (initial ones and session follow-ups, stably sorted by arrival) with its workload fields
and its simulated timing. ``blis replay`` reads such files back and re-draws the token ids
(engine.md §5.8). Files are written atomically (temporary file in the same directory, then
``os.replace``).
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Iterable

import attrs
import numpy as np

from blis_core.gomath import plain_shortest
from blis_core.request import COMPLETED, TIMED_OUT, Request
from blis_workloads.distributions import MAX_TOKEN_ID, BlockRand
from blis_workloads.spec import WorkloadError, go_fmt_v, strict_yaml, structure

__all__ = [
    "COLUMNS",
    "TraceError",
    "TraceHeader",
    "TraceNetworkConfig",
    "TraceRecord",
    "TraceServerConfig",
    "TraceV2",
    "export_run_trace",
    "load_trace",
    "records_from_requests",
    "replay_requests",
    "trace_requests",
    "write_trace",
]

COLUMNS = (
    "request_id", "client_id", "tenant_id", "slo_class", "session_id", "round_index",
    "prefix_group", "prefix_length", "streaming", "input_tokens", "output_tokens",
    "text_tokens", "image_tokens", "audio_tokens", "video_tokens", "reason_ratio",
    "model", "deadline_us", "server_input_tokens",
    "arrival_time_us", "send_time_us", "first_chunk_time_us", "last_chunk_time_us",
    "num_chunks", "status", "error_message", "finish_reason",
)


class TraceError(ValueError):
    """A malformed trace file; the message names the file (and the row, for CSV data)."""


@attrs.define
class TraceServerConfig:
    type: str = ""
    model: str = ""
    tensor_parallel: int = 0
    max_num_seqs: int = 0
    block_size: int = 0
    gpu_memory_utilization: float = 0.0
    max_model_len: int = 0


@attrs.define
class TraceNetworkConfig:
    measured_rtt_ms: float = 0.0


@attrs.define
class TraceHeader:
    """The YAML header. ``mode`` is "real", "generated" (run) or "replayed" (replay)."""

    trace_version: int = 2
    time_unit: str = "microseconds"
    created_at: str = ""
    mode: str = ""
    warm_up_requests: int = 0
    workload_seed: int | None = None
    workload_spec: str = ""
    server: TraceServerConfig | None = None
    network: TraceNetworkConfig | None = None


@attrs.define
class TraceRecord:
    """One CSV row. ``input_tokens`` counts the suffix after the shared prefix."""

    request_id: int
    client_id: str = ""
    tenant_id: str = ""
    slo_class: str = ""
    session_id: str = ""
    round_index: int = 0
    prefix_group: str = ""
    prefix_length: int = 0
    streaming: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    text_tokens: int = 0
    image_tokens: int = 0
    audio_tokens: int = 0
    video_tokens: int = 0
    reason_ratio: float = 0.0
    model: str = ""
    deadline_us: int = 0
    server_input_tokens: int = 0
    arrival_time_us: int = 0
    send_time_us: int = 0
    first_chunk_time_us: int = 0
    last_chunk_time_us: int = 0
    num_chunks: int = 0
    status: str = ""
    error_message: str = ""
    finish_reason: str = ""


@attrs.define
class TraceV2:
    header: TraceHeader
    records: list[TraceRecord]


# --------------------------------------------------------------------------------------------
# From simulated requests to records.

def trace_requests(initial: Iterable[Request], follow_ups: Iterable[Request] = ()
                   ) -> list[Request]:
    """The run's requests in trace order: initial then follow-ups, stably sorted by arrival."""
    requests = list(initial)
    requests.extend(follow_ups)
    requests.sort(key=lambda r: r.arrival_time)
    return requests


def records_from_requests(requests: Iterable[Request],
                          post_decode_overhead: int = 0) -> list[TraceRecord]:
    """Upstream ``RequestsToTraceRecords``; the row index is the record's request_id.

    Status: "ok" (completed), "timeout" (timed out), "incomplete" (everything else: still
    queued or running, dropped, rejected). With a first token, the first chunk is at
    arrival + TTFT and the last at arrival + TTFT + ΣITL; both are 0 otherwise.

    The engine folds a completed request's ITL list into ``e2e`` (plus the latency model's
    post-decode overhead, which the last chunk excludes) and drops the list, so ΣITL of a
    completed request is recovered from ``e2e``; ``post_decode_overhead`` is the latency
    model's ``post_decode_fixed_overhead()``.
    """
    records = []
    for i, req in enumerate(requests):
        status = "ok" if req.state == COMPLETED else "timeout" if req.state == TIMED_OUT \
            else "incomplete"
        first = last = 0
        if req.ttft_set:
            first = req.arrival_time + req.first_token_time
            if req.state == COMPLETED:
                overhead = post_decode_overhead if req.num_output > 0 else 0
                last = req.arrival_time + req.e2e - overhead
            else:
                last = first + sum(req.itl)
        prefix_len = req.prefix_length
        suffix = req.num_input - prefix_len
        if suffix < 0:                  # defensive, as upstream: treat as no prefix
            suffix, prefix_len = req.num_input, 0
        records.append(TraceRecord(
            request_id=i, client_id=req.client_id, tenant_id=req.tenant_id,
            slo_class=req.slo_class, session_id=req.session_id, round_index=req.round_index,
            prefix_group=req.prefix_group, prefix_length=prefix_len, streaming=req.streaming,
            input_tokens=suffix, output_tokens=req.num_output, text_tokens=req.text_tokens,
            image_tokens=req.image_tokens, audio_tokens=req.audio_tokens,
            video_tokens=req.video_tokens, reason_ratio=req.reason_ratio, model=req.model,
            deadline_us=req.deadline, arrival_time_us=req.arrival_time,
            send_time_us=req.arrival_time, first_chunk_time_us=first,
            last_chunk_time_us=last, status=status))
    return records


# --------------------------------------------------------------------------------------------
# Writing, byte-compatible with upstream (yaml.v3 Marshal; encoding/csv).

_PLAIN_YAML = re.compile(r"^[A-Za-z_./][A-Za-z0-9_./:+-]*$")


_YAML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t",
                 "\x85": "\\N", "\u2028": "\\L", "\u2029": "\\P"}


def _yaml_string(text: str) -> str:
    """A yaml.v3 scalar: plain when it reads back as this very string, else double-quoted with
    every character YAML would fold, drop or refuse escaped, so the header round-trips."""
    if _PLAIN_YAML.match(text) and text.lower() not in ("true", "false", "null", "yes", "no",
                                                        "on", "off", "y", "n", "~"):
        try:
            if strict_yaml(f"k: {text}") == {"k": text}:
                return text
        except WorkloadError:
            pass
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _YAML_ESCAPES:
            out.append(_YAML_ESCAPES[ch])
        elif code < 0x20 or 0x7F <= code <= 0x9F or code == 0xFEFF:
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _header_yaml(h: TraceHeader) -> str:
    """Keys in struct order; omitempty fields left out when empty, as upstream."""
    lines = [f"trace_version: {h.trace_version}", f"time_unit: {_yaml_string(h.time_unit)}"]
    if h.created_at:
        lines.append(f"created_at: {_yaml_string(h.created_at)}")
    lines += [f"mode: {_yaml_string(h.mode)}", f"warm_up_requests: {h.warm_up_requests}"]
    if h.workload_seed is not None:
        lines.append(f"workload_seed: {h.workload_seed}")
    if h.workload_spec:
        lines.append(f"workload_spec: {_yaml_string(h.workload_spec)}")
    for key, block in (("server", h.server), ("network", h.network)):
        if block is None:
            continue
        body = []
        for f in attrs.fields(type(block)):
            value = getattr(block, f.name)
            if not value:
                continue
            text = (_yaml_string(value) if isinstance(value, str) else
                    go_fmt_v(value) if isinstance(value, float) else str(value))
            body.append(f"    {f.name}: {text}")
        lines.append(f"{key}:" + (" {}" if not body else ""))
        lines += body
    return "\n".join(lines) + "\n"


def _go_float_f(x: float) -> str:
    """``strconv.FormatFloat(x, 'f', -1, 64)``: shortest digits, never an exponent."""
    text = plain_shortest(x)
    if text is not None:
        return text
    text = format(Decimal(repr(x)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_CSV_QUOTED = re.compile('[,"\r\n]')


def _csv_field(text: str) -> str:
    """Go ``encoding/csv`` quoting: only when needed, quotes doubled."""
    if text == "":
        return text
    if text == "\\." or _CSV_QUOTED.search(text) or text[0].isspace():
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_row(r: TraceRecord) -> str:
    # Only the text columns can need quoting: a number's digits never do.
    q = _csv_field
    return (f"{r.request_id},{q(r.client_id)},{q(r.tenant_id)},{q(r.slo_class)},"
            f"{q(r.session_id)},{r.round_index},{q(r.prefix_group)},{r.prefix_length},"
            f"{'true' if r.streaming else 'false'},{r.input_tokens},{r.output_tokens},"
            f"{r.text_tokens},{r.image_tokens},{r.audio_tokens},{r.video_tokens},"
            f"{_go_float_f(r.reason_ratio)},{q(r.model)},{r.deadline_us},"
            f"{r.server_input_tokens},{r.arrival_time_us},{r.send_time_us},"
            f"{r.first_chunk_time_us},{r.last_chunk_time_us},{r.num_chunks},{q(r.status)},"
            f"{q(r.error_message)},{q(r.finish_reason)}\n")


def _write_atomically(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_trace(header_path: str | Path, data_path: str | Path, header: TraceHeader,
                records: Iterable[TraceRecord]) -> None:
    """Write the YAML header and the CSV data (upstream ``ExportTraceV2``)."""
    _write_atomically(Path(header_path), _header_yaml(header))
    buf = io.StringIO()
    buf.write(",".join(COLUMNS) + "\n")
    for record in records:
        buf.write(_csv_row(record))
    _write_atomically(Path(data_path), buf.getvalue())


def export_run_trace(prefix: str | Path, initial: Iterable[Request],
                     follow_ups: Iterable[Request] = (), *, mode: str = "generated",
                     workload_seed: int | None = None, post_decode_overhead: int = 0) -> int:
    """``--trace-output PREFIX`` after a run: ``PREFIX.yaml`` and ``PREFIX.csv``.

    ``blis run`` writes mode "generated" with the spec's seed; ``blis replay`` writes mode
    "replayed" without a seed. Returns the number of records.
    """
    records = records_from_requests(trace_requests(initial, follow_ups), post_decode_overhead)
    header = TraceHeader(mode=mode, workload_seed=workload_seed)
    write_trace(f"{prefix}.yaml", f"{prefix}.csv", header, records)
    return len(records)


# --------------------------------------------------------------------------------------------
# Reading and replay.

def _parse_int(text: str, column: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise ValueError(f"parsing {column} {text!r}: invalid syntax") from None
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(f"parsing {column} {text!r}: value out of range")
    return value


def _non_negative(text: str, column: str) -> int:
    value = _parse_int(text, column)
    if value < 0:
        raise ValueError(f"parsing {column}: negative value {value} not allowed")
    return value


_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def _parse_record(row: list[str]) -> TraceRecord:
    streaming = _GO_BOOLS.get(row[8])
    if streaming is None:
        raise ValueError(f"parsing streaming {row[8]!r}: invalid syntax")
    try:
        ratio = float(row[15])
    except ValueError:
        raise ValueError(f"parsing reason_ratio {row[15]!r}: invalid syntax") from None
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"parsing reason_ratio {row[15]!r}: must be in range [0.0, 1.0]")
    deadline = _non_negative(row[17], "deadline_us")
    arrival = _parse_int(row[19], "arrival_time_us")
    if deadline > 0 and arrival > 0 and deadline < arrival:
        raise ValueError(f"parsing deadline_us: value {deadline} precedes arrival_time_us "
                         f"{arrival} (corrupt trace?)")
    return TraceRecord(
        request_id=_parse_int(row[0], "request_id"), client_id=row[1], tenant_id=row[2],
        slo_class=row[3], session_id=row[4], round_index=_parse_int(row[5], "round_index"),
        prefix_group=row[6], prefix_length=_non_negative(row[7], "prefix_length"),
        streaming=streaming, input_tokens=_non_negative(row[9], "input_tokens"),
        output_tokens=_non_negative(row[10], "output_tokens"),
        text_tokens=_non_negative(row[11], "text_tokens"),
        image_tokens=_non_negative(row[12], "image_tokens"),
        audio_tokens=_non_negative(row[13], "audio_tokens"),
        video_tokens=_non_negative(row[14], "video_tokens"), reason_ratio=ratio,
        model=row[16], deadline_us=deadline,
        server_input_tokens=_non_negative(row[18], "server_input_tokens"),
        arrival_time_us=arrival, send_time_us=_parse_int(row[20], "send_time_us"),
        first_chunk_time_us=_parse_int(row[21], "first_chunk_time_us"),
        last_chunk_time_us=_parse_int(row[22], "last_chunk_time_us"),
        num_chunks=_non_negative(row[23], "num_chunks"), status=row[24],
        error_message=row[25].strip(), finish_reason=row[26].strip())


def load_trace(header_path: str | Path, data_path: str | Path) -> TraceV2:
    """Upstream ``LoadTraceV2``: a strict header (unknown keys are errors) and the CSV rows.

    Extra trailing columns are allowed; a short or malformed row raises ``TraceError`` naming
    the file and the data row (1 = first row after the column header).
    """
    try:
        text = Path(header_path).read_text()
    except OSError as exc:
        raise TraceError(f"reading trace header {header_path}: {exc}") from None
    try:
        header = structure(TraceHeader, strict_yaml(text))
    except WorkloadError as exc:
        raise TraceError(f"parsing trace header {header_path}: "
                         f"{' '.join(str(exc).split())}") from None
    try:
        f = open(data_path, newline="")
    except OSError as exc:
        raise TraceError(f"opening trace data {data_path}: {exc}") from None
    records = []
    with f:
        reader = csv.reader(f, strict=True)
        try:
            next(reader)
        except StopIteration:
            raise TraceError(f"reading CSV header of {data_path}: empty file") from None
        except csv.Error as exc:
            raise TraceError(f"reading CSV header of {data_path}: {exc}") from None
        row_number = 0
        while True:
            row_number += 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise TraceError(f"{data_path}: row {row_number}: {exc}") from None
            if len(row) < len(COLUMNS):
                raise TraceError(f"{data_path}: row {row_number}: CSV row has {len(row)} "
                                 f"columns, expected at least {len(COLUMNS)}")
            try:
                records.append(_parse_record(row))
            except ValueError as exc:
                raise TraceError(f"{data_path}: row {row_number}: {exc}") from None
    return TraceV2(header, records)


def replay_requests(trace: TraceV2, seed: int) -> list[Request]:
    """Upstream ``LoadTraceV2Requests``: requests with synthetic token ids from one
    ``rand(seed)``; ``seed`` is ``blis replay --seed`` (the header's workload_seed is not used).

    Draw order: one prefix per prefix group (first appearance, ``prefix_length`` ids), then per
    record its input suffix ids and its output ids. Ids are ``request_<request_id>``.
    """
    if not trace.records:
        raise TraceError("empty trace")
    rng = BlockRand(seed)
    prefixes: dict[str, np.ndarray] = {}
    for rec in trace.records:
        if rec.prefix_group and rec.prefix_length > 0 and rec.prefix_group not in prefixes:
            prefixes[rec.prefix_group] = rng.intn_array(MAX_TOKEN_ID, rec.prefix_length)
    requests = []
    for rec in trace.records:
        input_tokens = rng.intn_array(MAX_TOKEN_ID, rec.input_tokens)
        prefix = prefixes.get(rec.prefix_group) if rec.prefix_group else None
        if prefix is not None:
            input_tokens = np.concatenate((prefix, input_tokens))
        output = rng.intn_array(MAX_TOKEN_ID, rec.output_tokens)
        req = Request(f"request_{rec.request_id}", rec.arrival_time_us, input_tokens, output,
                      len(output), rec.deadline_us, session_id=rec.session_id,
                      round_index=rec.round_index, client_id=rec.client_id,
                      tenant_id=rec.tenant_id, slo_class=rec.slo_class,
                      prefix_group=rec.prefix_group, prefix_length=rec.prefix_length,
                      model=rec.model, streaming=rec.streaming, reason_ratio=rec.reason_ratio)
        req.text_tokens, req.image_tokens = rec.text_tokens, rec.image_tokens
        req.audio_tokens, req.video_tokens = rec.audio_tokens, rec.video_tokens
        requests.append(req)
    return requests
