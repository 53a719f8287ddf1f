"""Logs: one line per event in the chosen format, whatever the event carries."""

import io
import json
import logging
import threading

import pytest

from atess_exporter.outside.logs import setup_logging

log = logging.getLogger("atess_exporter.test")
SECRET = "tok-s3cr3t-value"


class Sink:
    """A strict UTF-8 byte stream, like a real stderr: an unencodable character is an error."""

    def __init__(self):
        self.raw = io.BytesIO()
        self.stream = io.TextIOWrapper(self.raw, encoding="utf-8", errors="strict", write_through=True)

    def lines(self):
        self.stream.flush()
        return self.raw.getvalue().decode("utf-8").splitlines()


@pytest.fixture
def logs(request):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def setup(fmt="logfmt", level="info"):
        sink = Sink()
        setup_logging(level, fmt, secrets=[SECRET], stream=sink.stream)
        return sink

    yield setup
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])


def boom():
    try:
        raise ValueError(f"bad value near {SECRET}\nsecond line")
    except ValueError:
        log.exception("poll crashed", extra={"fields": {"sn": "A1"}})


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_an_exception_is_one_line_with_type_and_message_and_no_stack_at_info(logs, fmt):
    sink = logs(fmt)
    boom()
    [line] = sink.lines()
    assert "Traceback" not in line and SECRET not in line
    if fmt == "json":
        event = json.loads(line)
        assert event["exc_type"] == "ValueError" and event["exc"].startswith("bad value near <redacted>")
        assert "stack" not in event
    else:
        assert "exc_type=ValueError" in line and 'exc="bad value near <redacted>\\\\nsecond line"' in line


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_at_debug_the_stack_is_in_the_same_line(logs, fmt):
    sink = logs(fmt, "debug")
    boom()
    [line] = sink.lines()
    assert "Traceback" in line and "test_logs.py" in line and SECRET not in line


def test_json_values_keep_their_types(logs):
    sink = logs("json")
    log.info("retrying", extra={"fields": {"attempt": 2, "in_seconds": 0.5, "online": True, "none": None,
                                           "sn": "A1", "nan": float("nan"), "inf": float("inf")}})
    event = json.loads(sink.lines()[0])
    assert event["attempt"] == 2 and isinstance(event["attempt"], int)
    assert event["in_seconds"] == 0.5 and event["online"] is True and event["none"] is None
    assert event["sn"] == "A1" and event["nan"] == "NaN" and event["inf"] == "+Inf"


def test_logfmt_booleans_and_numbers(logs):
    sink = logs("logfmt")
    log.info("x", extra={"fields": {"online": False, "n": 3, "s": 1.5}})
    assert sink.lines()[0].endswith("online=false n=3 s=1.5")


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_control_characters_are_escaped_and_long_text_truncated(logs, fmt):
    sink = logs(fmt)
    log.warning("poll failed", extra={"fields": {"error": "code 7: boom\r\x1b[31mred\x1b[0m" + "m" * 100_000}})
    [line] = sink.lines()
    assert "\x1b" not in line and "\r" not in line
    assert "x1b" in line, "shown escaped"
    assert len(line) < 3000


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_a_lone_surrogate_in_a_message_is_written_not_a_logging_error(logs, fmt, capsys):
    sink = logs(fmt)
    log.warning("plant \ud800x", extra={"fields": {"plant": "a\udc00b"}})
    lines = sink.lines()
    assert len(lines) == 1 and "plant" in lines[0]
    assert "Logging error" not in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_an_uncaught_exception_in_a_thread_is_one_log_line(logs, fmt, capsys):
    sink = logs(fmt)

    def crash():
        raise RuntimeError(f"worker died with {SECRET}")

    t = threading.Thread(target=crash, name="poll_7")
    t.start()
    t.join(10)
    lines = sink.lines()
    assert len(lines) == 1, lines
    assert "RuntimeError" in lines[0] and "poll_7" in lines[0] and SECRET not in lines[0]
    assert "Traceback" not in capsys.readouterr().err
