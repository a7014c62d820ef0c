"""Command line of the emulator (``python -m dagster_kie.emulator --help``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import DEFAULT_API_KEY, MB, EmulatorSettings
from .faults import FAULT_KINDS, FaultError, parse_fault_arg

__all__ = ["build_parser", "main", "settings_from_args"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (flags mirror :class:`EmulatorSettings` fields)."""
    d = EmulatorSettings()
    p = argparse.ArgumentParser(
        prog="python -m dagster_kie.emulator",
        description="A local kie.ai server (jobs, uploads, remix, callbacks, fault injection).",
    )
    a = p.add_argument
    a("--host", default=d.host, help="interface to bind (default: %(default)s)")
    a("--port", type=int, default=d.port, help="port; 0 picks a free one (default: %(default)s)")
    a(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"accepted API key; repeatable (default: {DEFAULT_API_KEY})",
    )
    a(
        "--credits",
        type=float,
        default=d.initial_credits,
        dest="initial_credits",
        help="starting balance (default: %(default)s)",
    )
    a(
        "--cost-per-image",
        type=float,
        default=d.credits_per_image,
        dest="credits_per_image",
        help="credits charged per successful image (default: %(default)s)",
    )
    a(
        "--create-limit",
        type=int,
        default=d.create_limit,
        help="createTask calls per window per key (default: %(default)s)",
    )
    a(
        "--create-window",
        type=float,
        default=d.create_window,
        help="createTask window in seconds (default: %(default)s)",
    )
    a(
        "--query-limit",
        type=int,
        default=d.query_limit,
        help="query calls per window per key (default: %(default)s)",
    )
    a(
        "--query-window",
        type=float,
        default=d.query_window,
        help="query window in seconds (default: %(default)s)",
    )
    a(
        "--rate-limit-status",
        type=int,
        choices=(200, 429),
        default=d.rate_limit_status,
        help="HTTP status of rate-limited replies (body code is always 429)",
    )
    a(
        "--task-duration",
        type=float,
        default=d.task_duration,
        help="mean task duration in seconds (default: %(default)s)",
    )
    a(
        "--task-jitter",
        type=float,
        default=d.task_jitter,
        help="uniform: ± fraction of the mean; lognormal: sigma (default: %(default)s)",
    )
    a(
        "--task-duration-dist",
        choices=("fixed", "uniform", "lognormal"),
        default=d.task_duration_dist,
        help="duration distribution (default: %(default)s)",
    )
    a(
        "--record-delay",
        type=float,
        default=d.record_delay,
        help="seconds after creation during which recordInfo still says 'recordInfo is null'",
    )
    a(
        "--random-seed",
        type=int,
        default=None,
        help="make durations, fault fractions and ids deterministic",
    )
    a(
        "--result-url-ttl",
        type=float,
        default=d.result_url_ttl,
        help="lifetime of result URLs in seconds (default: %(default)s)",
    )
    a(
        "--download-url-ttl",
        type=float,
        default=d.download_url_ttl,
        help="lifetime of download-url links in seconds (default: %(default)s)",
    )
    a("--url-secret", default=None, help="HMAC secret for file URLs (default: random)")
    a(
        "--image-cache-mb",
        type=float,
        default=d.image_cache_mb,
        help="rendered-image cache size in MB (default: %(default)s)",
    )
    a(
        "--remix-mode",
        choices=("async", "sync"),
        default=d.remix_mode,
        help="remix reply: seed 004's task envelope or Ideogram's synchronous shape",
    )
    a("--webhook-hmac-key", default=None, help="sign callbacks with this key")
    a(
        "--callback-timeout",
        type=float,
        default=d.callback_timeout,
        help="seconds to wait for a callback receiver (default: %(default)s)",
    )
    a("--upload-dir", default=None, help="where uploads are kept (default: a temp dir)")
    a(
        "--max-base64-upload",
        type=int,
        default=d.max_base64_upload,
        help=f"bytes (default: {d.max_base64_upload // MB} MB)",
    )
    a(
        "--max-stream-upload",
        type=int,
        default=d.max_stream_upload,
        help=f"bytes (default: {d.max_stream_upload // MB} MB)",
    )
    a(
        "--max-url-upload",
        type=int,
        default=d.max_url_upload,
        help=f"bytes (default: {d.max_url_upload // MB} MB)",
    )
    a(
        "--url-upload-timeout",
        type=float,
        default=d.url_upload_timeout,
        help="seconds (default: %(default)s)",
    )
    a(
        "--allow-remote-url-upload",
        action="store_true",
        help="let file-url-upload fetch non-loopback URLs",
    )
    a(
        "--lenient-required",
        action="store_true",
        help="let reframe omit the fields seed 000 marks required but gives defaults for",
    )
    a(
        "--fault",
        action="append",
        dest="faults",
        metavar="KIND[:K=V,...]",
        default=[],
        help="fault active from the start; repeatable; kinds: " + ", ".join(FAULT_KINDS),
    )
    a("--access-log", action="store_true", help="print uvicorn's access log")
    a(
        "--log-level",
        default=d.log_level,
        choices=("critical", "error", "warning", "info", "debug", "trace"),
    )
    return p


def settings_from_args(argv: Sequence[str] | None = None) -> EmulatorSettings:
    """Parse ``argv`` into settings (exits with a usage error if invalid)."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    values = vars(ns)
    values["api_keys"] = tuple(values["api_keys"] or (DEFAULT_API_KEY,))
    values["faults"] = tuple(values["faults"])
    for spec in values["faults"]:
        try:
            parse_fault_arg(spec)
        except FaultError as exc:
            parser.error(f"--fault {spec}: {exc}")
    try:
        return EmulatorSettings(**values)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse flags and serve until interrupted."""
    settings = settings_from_args(argv)
    from .server import serve  # heavy imports only once the flags are valid

    try:
        serve(settings)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"kie emulator: {exc}", file=sys.stderr)
        return 1
    return 0
