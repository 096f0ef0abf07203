"""``servegen_data{path, span_start, span_end}`` (blis_workloads/servegen.py, docs/workloads.md):
ServeGen chunk files in upstream's format, written small and synthetic into tmp_path."""

from __future__ import annotations

import json
import logging
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _shared import run_cli
from blis_workloads import MAX_HORIZON, WorkloadError, generate_workload, parse_workload_spec
from blis_workloads.scenarios import dump_workload_spec
from blis_workloads.servegen import go_parse_float, load_servegen_clients, parse_servegen_pdf
from blis_workloads.spec import ServeGenDataSpec


def write_chunk(directory, chunk_id, trace_rows, windows):
    """``trace_rows``: CSV lines; ``windows``: {start: (input pdf text, output pdf text)}."""
    directory.mkdir(exist_ok=True)
    trace = directory / f"chunk-{chunk_id}-trace.csv"
    trace.write_text("".join(f"{row}\n" for row in trace_rows))
    (directory / f"chunk-{chunk_id}-dataset.json").write_text(json.dumps(
        {start: {"input_tokens": i, "output_tokens": o} for start, (i, o) in windows.items()}))


def spec_text(path, extra="") -> str:
    return (f'version: "2"\nseed: 5\naggregate_rate: 40\nnum_requests: 300\n'
            f"servegen_data:\n  path: {json.dumps(str(path))}\n{extra}")


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "servegen"
    # chunk-10 sorts before chunk-2 (file-name order, as upstream's sorted glob).
    write_chunk(d, "2", ["0,2.0,1.5,Gamma", "600,6.0,2.5,Gamma", "1200,6.0,9.0,Weibull"],
                {"0": ("{100: 0.25, 300.0: 0.75,}", "{20: 1.0}")})
    write_chunk(d, "10", ["0,1.0,0.7,WEIBULL"],
                {"600": ("{}", "{}"), "0": ("{50: 1}", "{5: 0.5, 7: 0.5}")})
    write_chunk(d, "7", ["0,0,0,", "600,0.0,1.0,Gamma"], {"0": ("{1: 1}", "{1: 1}")})
    return d


# -- parsing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("1", 1.0), ("-2.5", -2.5), ("1.", 1.0), (".5", 0.5), ("1e3", 1000.0), ("2E-2", 0.02),
    ("1_000", 1000.0), ("0x1p-2", 0.25), ("inf", math.inf), ("-Infinity", -math.inf),
    ("1e-400", 0.0),
])
def test_go_parse_float_accepts_what_go_accepts(text, value):
    assert go_parse_float(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1e400", "1__0", "_1", "+nan", "1.2.3", "0x1",
                                  "\u0661", "1 2", "1e"])
def test_go_parse_float_rejects_what_go_rejects(text):
    assert go_parse_float(text) is None


def test_go_parse_float_nan():
    assert math.isnan(go_parse_float("NaN"))


def test_pdf_strings_in_python_dict_syntax():
    assert parse_servegen_pdf(" {100: 0.5, 200.0: 3e-1, 300.9: 0.2,} ") == {
        100: 0.5, 200: 0.3, 300: 0.2}
    assert parse_servegen_pdf("{5: 0.1, 5.5: 0.9}") == {5: 0.9}      # truncated key repeats


@pytest.mark.parametrize("text, message", [
    ("100: 0.5", "expected dict string starting with '{'"),
    ("{ }", "empty PDF dictionary"),
    ("{,}", "no valid entries"),
    ("{100 0.5}", 'invalid key:value pair: "100 0.5"'),
    ("{x: 0.5}", 'invalid key "x"'),
    ("{100: p}", 'invalid value "p" for key 100'),
])
def test_pdf_string_errors(text, message):
    with pytest.raises(WorkloadError, match=message.replace("(", r"\(")):
        parse_servegen_pdf(text)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.integers(1, 10**6), st.floats(0, 1, allow_nan=False), min_size=1))
def test_pdf_of_a_python_dict_repr_round_trips(pdf):
    assert parse_servegen_pdf(repr(pdf)) == pdf
    assert parse_servegen_pdf(repr({float(k): v for k, v in pdf.items()})) == pdf


# -- loading ----------------------------------------------------------------------------------

def test_each_active_chunk_becomes_a_client_in_file_name_order(data):
    clients = load_servegen_clients(ServeGenDataSpec(str(data)))
    assert [c.id for c in clients] == ["servegen-chunk-10", "servegen-chunk-2"]
    ten, two = clients
    assert ten.tenant_id == "chunk-10" and ten.rate_fraction == 1.0
    assert (ten.arrival.process, ten.arrival.cv) == ("weibull", 0.7)
    # The first usable window in key order: "0" (window "600" has empty pdfs).
    assert ten.input_distribution.params == {"50": 1.0}
    assert ten.output_distribution.params == {"5": 0.5, "7": 0.5}
    # The highest rate wins; on a tie the earlier row.
    assert two.rate_fraction == 6.0
    assert (two.arrival.process, two.arrival.cv) == ("gamma", 2.5)
    assert two.input_distribution.type == "empirical"
    assert list(two.input_distribution.params) == ["100", "300"]


def test_span_filters_trace_rows_and_dataset_windows(tmp_path):
    d = tmp_path / "sg"
    write_chunk(d, "0", ["0,9.0,1.0,Gamma", "600,3.0,2.0,Gamma", "1200,5.0,3.0,Foo"],
                {"0": ("{1: 1}", "{2: 1}"), "600": ("{10: 1}", "{20: 1}"),
                 "1200": ("{100: 1}", "{200: 1}")})
    (client,) = load_servegen_clients(ServeGenDataSpec(str(d), span_start=600))
    assert client.rate_fraction == 5.0
    assert client.arrival.process == "poisson" and client.arrival.cv is None
    # Keys sort as strings: "1200" < "600".
    assert client.input_distribution.params == {"100": 1.0}
    (client,) = load_servegen_clients(ServeGenDataSpec(str(d), span_start=600, span_end=1200))
    assert client.rate_fraction == 3.0
    assert client.input_distribution.params == {"10": 1.0}


def test_rows_with_too_few_fields_or_bad_numbers_are_skipped(tmp_path, caplog):
    d = tmp_path / "sg"
    write_chunk(d, "0", ["0,abc,1,Gamma", "600,2,1,Gamma"], {"0": ("{1: 1}", "{1: 1}")})
    write_chunk(d, "1", ["0,5,1"], {"0": ("{1: 1}", "{1: 1}")})
    # The CLI stops "blis" records from reaching the root logger: listen on the module's own.
    logger = logging.getLogger("blis.workload")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.WARNING)
    try:
        (client,) = load_servegen_clients(ServeGenDataSpec(str(d)))
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
    assert client.id == "servegen-chunk-0" and client.rate_fraction == 2.0
    assert "1 rows in" in caplog.text and "were skipped" in caplog.text


@pytest.mark.parametrize("setup, message", [
    (lambda d: d.mkdir(), "no chunk-*-trace.csv files found in"),
    (lambda d: write_chunk(d, "0", ["0,1,1,Gamma", "1,2"], {}),
     "loading chunk 0: reading trace CSV: record on line 2: wrong number of fields"),
    (lambda d: (write_chunk(d, "0", ["0,1,1,Gamma"], {}),
                (d / "chunk-0-dataset.json").unlink()),
     "loading chunk 0: reading dataset:"),
    (lambda d: (write_chunk(d, "0", ["0,1,1,Gamma"], {}),
                (d / "chunk-0-dataset.json").write_text("{not json")),
     "loading chunk 0: parsing dataset JSON:"),
    (lambda d: (write_chunk(d, "0", ["0,1,1,Gamma"], {}),
                (d / "chunk-0-dataset.json").write_text('{"0": {"input_tokens": 5}}')),
     'loading chunk 0: parsing dataset JSON: window "0"'),
    (lambda d: write_chunk(d, "0", ["0,1,1,Gamma"], {"0": ("{1: 1}", "{}")}),
     "loading chunk 0: no valid PDF windows found in dataset"),
    (lambda d: write_chunk(d, "0", ["0,1,1,Gamma"], {"0": ("{1: x}", "{1: 1}")}),
     'loading chunk 0: parsing input PDF: invalid value "x" for key 1'),
    (lambda d: write_chunk(d, "0", ["0,0,1,Gamma"], {}), "no valid chunks found in"),
])
def test_bad_data_names_the_chunk_and_the_problem(tmp_path, setup, message):
    d = tmp_path / "sg"
    setup(d)
    with pytest.raises(WorkloadError) as info:
        load_servegen_clients(ServeGenDataSpec(str(d)))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# -- generation -------------------------------------------------------------------------------

def test_servegen_generates_exactly_like_the_equivalent_explicit_clients(data):
    """Loading draws no random numbers: the RNG order is that of the clients written out."""
    spec = parse_workload_spec(spec_text(data))
    from_data = generate_workload(spec, MAX_HORIZON, 300).requests
    explicit = parse_workload_spec(spec_text(data))
    explicit.servegen_data = None
    explicit.clients = load_servegen_clients(ServeGenDataSpec(str(data)))
    written = parse_workload_spec(dump_workload_spec(explicit))
    from_clients = generate_workload(written, MAX_HORIZON, 300).requests

    def key(r):
        return (r.id, r.arrival_time, r.client_id, r.tenant_id, r.num_input, r.max_output_len,
                r.input_tokens.tolist())

    assert len(from_data) == 300
    assert [key(r) for r in from_data] == [key(r) for r in from_clients]
    assert {r.num_input for r in from_data if r.client_id == "servegen-chunk-2"} <= {100, 300}
    assert {r.num_input for r in from_data if r.client_id == "servegen-chunk-10"} == {50}
    # Rates are proportional to the chunks' peak rates, 1 : 6.
    share = sum(r.client_id == "servegen-chunk-2" for r in from_data) / 300
    assert abs(share - 6 / 7) < 6 * math.sqrt(6 / 49 / 300)


def test_servegen_composes_with_cohorts_and_excludes_clients(data):
    cohort = ("cohorts:\n  - id: extra\n    population: 2\n    rate_fraction: 1.0\n"
              "    arrival: {process: poisson}\n"
              "    input_distribution: {type: constant, params: {value: 3}}\n"
              "    output_distribution: {type: constant, params: {value: 3}}\n")
    requests = generate_workload(parse_workload_spec(spec_text(data, cohort)), MAX_HORIZON,
                                 300).requests
    assert {r.client_id for r in requests} == {"servegen-chunk-10", "servegen-chunk-2",
                                               "extra-0", "extra-1"}
    client = ("clients:\n  - id: a\n    rate_fraction: 1\n    arrival: {process: poisson}\n"
              "    input_distribution: {type: constant, params: {value: 3}}\n"
              "    output_distribution: {type: constant, params: {value: 3}}\n")
    with pytest.raises(WorkloadError, match="mutually exclusive"):
        generate_workload(parse_workload_spec(spec_text(data, client)), MAX_HORIZON, 10)


def test_invalid_loaded_client_fails_validation_with_its_path(tmp_path):
    d = tmp_path / "sg"
    write_chunk(d, "0", ["0,1,0,Gamma"], {"0": ("{1: 1}", "{1: 1}")})
    with pytest.raises(WorkloadError, match=r"clients\[0\]\.arrival\.cv must be positive"):
        generate_workload(parse_workload_spec(spec_text(d)), MAX_HORIZON, 10)


def test_cli_validate_preview_and_one_line_errors(data, tmp_path, capsys):
    spec = tmp_path / "sg.yaml"
    spec.write_text(spec_text(data))
    code, out, err = run_cli(["workload", "validate", str(spec)], capsys)
    assert code == 0, err
    assert f"servegen_data {data}" in out
    code, out, err = run_cli(["workload", "preview", str(spec), "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["requests"] == 300
    (data / "chunk-2-dataset.json").write_text("[]")
    code, out, err = run_cli(["workload", "validate", str(spec)], capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "blis: error: Failed to generate workload: loading ServeGen data: loading chunk 2: "
        "parsing dataset JSON: expected an object of windows"]
