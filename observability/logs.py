"""Structured JSON-lines logs, with no personal data: identifiers appear only as pseudonyms.

Every line has ``time``, ``level``, ``logger``, ``message`` and, when a span is
current, ``trace_id`` and ``span_id`` (so a log line leads to its trace); exchange
lines add ``request_id``, ``consumer``, ``service``, ``purpose`` (known codes
only), ``outcome`` and ``reason``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Collection
from functools import cache
from typing import Any

from opentelemetry import trace

from gateway.core.types import AuditRecord, ExchangeTiming
from observability.labels import known_or_other

__all__ = [
    "LOG_LEVELS",
    "JsonFormatter",
    "LoggingObserver",
    "RateLimitedErrorLog",
    "RateLimitedSecurityLog",
    "configure_logging",
    "log_level",
    "quiet_url_loggers",
    "unexpected_errors",
]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"], entry["span_id"] = f"{span.trace_id:032x}", f"{span.span_id:016x}"
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


#: Libraries that log request URLs at INFO: our URLs (paths, queries) hold national ids.
URL_LOGGERS = ("httpx", "httpcore", "uvicorn.access", "aiohttp.access")
#: Loggers of servers that would print a traceback (with the exception's text) on an escaped error;
#: the front doors catch everything and log through ``unexpected_errors()`` instead.
_SERVER_ERROR_LOGGERS = ("uvicorn.error", "grpc._cython.cygrpc")


def quiet_url_loggers() -> None:
    """Only warnings and errors from libraries that would log URLs."""
    for name in URL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> int:
    """``PASSERELLE_LOG_LEVEL``'s value, in any case (``debug``, ``INFO``); ``ValueError`` naming the choices."""
    name = text.strip().upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"PASSERELLE_LOG_LEVEL: {text!r} is not a log level; give one of {', '.join(LOG_LEVELS)}")
    return int(logging.getLevelName(name))


def configure_logging(level: str | int = "INFO") -> None:
    """Configure once at start-up: JSON lines on stderr, from every logger of the process.

    Libraries' loggers that carry a handler of their own (servers, the OpenTelemetry SDK and
    exporters) are stripped of it and propagate to the root, so that nothing is written twice or
    as plain text.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level(level) if isinstance(level, str) else level)
    quiet_url_loggers()
    loggers = [logging.getLogger(name) for name in _SERVER_ERROR_LOGGERS]
    loggers += [logger for name, logger in logging.Logger.manager.loggerDict.items()
                if isinstance(logger, logging.Logger) and name.startswith("opentelemetry")]  # fmt: skip
    for logger in loggers:
        logger.handlers[:] = []
        logger.propagate = True


class LoggingObserver:
    """One log line per exchange: who, what, why, outcome; never the subject in clear."""

    def __init__(self, *, known_purposes: Callable[[], Collection[str]]) -> None:
        self._log = logging.getLogger("passerelle.exchange")
        self._purposes = known_purposes  # the caller's x-purpose is logged only if it is a known code

    def on_exchange(self, record: AuditRecord, provider: str, timing: ExchangeTiming) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        self._log.info(
            "exchange",
            extra={
                "fields": {
                    "request_id": record.request_id,
                    "trace_id": record.trace_id,
                    "consumer": record.consumer,
                    "service": record.service,
                    "provider": provider,
                    "purpose": known_or_other(record.purpose, self._purposes()),
                    "outcome": str(record.outcome),
                    "reason": record.reason,
                    "latency_ms": round(record.latency_us / 1000, 3),
                    "protocol": record.protocol,
                }
            },
        )


class _Bucket:
    """A token bucket: ``take()`` is True at most ``rate`` times a second after a ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        self._tokens, self._last = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class RateLimitedErrorLog:
    """The server's own unexpected errors: one JSON line each, at most ``rate``/s, always counted.

    The line names the exception's type and where it was raised, never its text: messages of
    library exceptions quote their input (national ids, tokens).
    """

    def __init__(self, rate: float = 10.0, burst: int = 20) -> None:
        self._log = logging.getLogger("passerelle.error")
        self._bucket = _Bucket(rate, burst)
        self.counts: dict[str, int] = {}
        self.suppressed = 0

    def record(self, exc: BaseException, door: str) -> None:
        self.counts[door] = self.counts.get(door, 0) + 1
        if not self._bucket.take():
            self.suppressed += 1
            return
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
        fields = {"door": door, "error": type(exc).__qualname__, "where": where,
                  "suppressed_since_last": self.suppressed}
        self.suppressed = 0
        self._log.error("unexpected error", extra={"fields": fields})


@cache
def unexpected_errors() -> RateLimitedErrorLog:
    """The process's one error log for both front doors (made on first use, not at import)."""
    return RateLimitedErrorLog()


class RateLimitedSecurityLog:
    """Security events (refusals before authentication): always counted, logged at most ``rate``/s.

    A flood of junk tokens must not flood the logs or the store.
    """

    def __init__(self, rate: float = 10.0, burst: int = 20) -> None:
        self._log = logging.getLogger("passerelle.security")
        self._rate, self._burst = rate, float(burst)
        self._tokens, self._last = float(burst), time.monotonic()
        self.counts: dict[tuple[str, str], int] = {}
        self.suppressed = 0

    def record(self, reason: str, protocol: str, detail: str = "") -> None:
        key = (str(reason), protocol)
        self.counts[key] = self.counts.get(key, 0) + 1
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            self.suppressed += 1
            return
        self._tokens -= 1
        fields = {"reason": str(reason), "protocol": protocol, "suppressed_since_last": self.suppressed}
        self.suppressed = 0
        self._log.warning("security event", extra={"fields": fields})
