"""Every logger of the process writes through the one JSON handler (the OpenTelemetry SDK's included)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from observability.logs import configure_logging, log_level


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_an_exporter_logger_with_its_own_handler_is_written_once_as_json(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    plain = io.StringIO()
    exporter.addHandler(logging.StreamHandler(plain))
    exporter.propagate = False
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    configure_logging("INFO")
    exporter.warning("Transient error HTTPConnectionPool(...) encountered while exporting spans batch")
    lines = out.getvalue().splitlines()
    assert plain.getvalue() == ""
    assert [json.loads(line)["logger"] for line in lines] == [exporter.name]


def test_the_log_level_is_any_case_and_an_unknown_one_names_the_variable() -> None:
    assert log_level("debug") == logging.DEBUG and log_level(" Warning ") == logging.WARNING
    with pytest.raises(ValueError, match="PASSERELLE_LOG_LEVEL: 'bogus' is not a log level"):
        log_level("bogus")


def test_the_demo_registries_write_json_lines_only() -> None:
    """They run beside the gateway, with its OTEL_* variables: their exporter errors must be JSON too."""
    # main() up to the data set: whatever it logs (here an exporter's warning) must be a JSON line.
    probe = ("import logging, sys; from gateway.demo import registries as r; "
             "r.generate = lambda *a: sys.exit(logging.getLogger('opentelemetry.sdk').warning('export failed'))")
    result = subprocess.run([sys.executable, "-c", probe + "; r.main(['--persons', '10'])"], capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    lines = result.stderr.splitlines()
    assert lines and all(json.loads(line)["logger"] == "opentelemetry.sdk" for line in lines), result.stderr
