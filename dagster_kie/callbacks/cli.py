"""``python -m dagster_kie.callbacks`` — run the callback receiver.

The HMAC key is read from an environment variable (``--hmac-key-env NAME``), never from the
command line, so it does not show in ``ps``. S3 comes from the standard ``AWS_*`` environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence

from .urls import DEFAULT_PATH

__all__ = ["build_parser", "main"]

log = logging.getLogger("dagster_kie.callbacks")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The argument parser (defaults of ``--bucket``/``--prefix`` come from ``KIE_S3_*``)."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="python -m dagster_kie.callbacks",
        description="Receive kie.ai callbacks, verify them and store them in S3.",
        allow_abbrev=False,  # "--hmac-key SECRET" must not pass for "--hmac-key-env SECRET"
    )
    a = p.add_argument
    a("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    a("--port", type=int, default=8080, help="port; 0 picks a free one (default: %(default)s)")
    a(
        "--bucket",
        default=env.get("KIE_S3_BUCKET") or None,
        help="S3 bucket of the ledger and the inbox (default: $KIE_S3_BUCKET)",
    )
    a(
        "--prefix",
        default=(env.get("KIE_S3_PREFIX") or "kie").strip("/"),
        help="S3 key prefix (default: $KIE_S3_PREFIX or kie)",
    )
    a("--path", default=DEFAULT_PATH, help="callback path (default: %(default)s)")
    a(
        "--hmac-key-env",
        metavar="NAME",
        default=None,
        help="environment variable holding kie.ai's webhookHmacKey; without it, unsigned "
        "callbacks are accepted",
    )
    a("--max-body-bytes", type=int, default=1_000_000, help="default: %(default)s")
    a("--max-age-s", type=float, default=300.0, help="signature timestamp tolerance, seconds")
    a("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    a("--access-log", action="store_true", help="log every request (uvicorn access log)")
    return p


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the receiver until SIGINT/SIGTERM; returns the exit status."""
    env = os.environ if env is None else env
    parser = build_parser(env)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Name unknown options but never echo values: one of them could be a secret.
        options = [item.split("=", 1)[0] for item in extra if item.startswith("-")]
        parser.error(f"unrecognized arguments: {' '.join(options) or '(values not shown)'}")
    if not args.bucket:
        parser.error("--bucket is required (or set KIE_S3_BUCKET)")
    if not args.path.startswith("/"):
        parser.error("--path must start with '/'")
    hmac_key: str | None = None
    if args.hmac_key_env is not None:
        if not _ENV_NAME.match(args.hmac_key_env):
            parser.error("--hmac-key-env takes the NAME of an environment variable, not the key")
        hmac_key = (env.get(args.hmac_key_env) or "").strip() or None
        if hmac_key is None:
            parser.error(f"environment variable {args.hmac_key_env} is not set or empty")
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if hmac_key is None:
        log.warning("no HMAC key: unsigned callbacks are accepted (use --hmac-key-env)")

    from ..ledger import TaskLedger
    from .app import create_app
    from .inbox import CallbackInbox
    from .s3 import s3_client_from_env
    from .server import bind_socket, serve

    client = s3_client_from_env(env)
    app = create_app(
        inbox=CallbackInbox(client, args.bucket, args.prefix),
        ledger=TaskLedger(client, args.bucket, prefix=args.prefix),
        hmac_key=hmac_key,
        max_body_bytes=args.max_body_bytes,
        max_age_s=args.max_age_s,
        path=args.path,
    )
    sock = bind_socket(args.host, args.port)
    log.info(
        "receiving callbacks on %s:%d%s into s3://%s/%s (signed: %s)",
        args.host, sock.getsockname()[1], args.path, args.bucket, args.prefix, hmac_key is not None,
    )  # fmt: skip
    serve(
        app,
        sock=sock,
        path=args.path,
        host=args.host,
        access_log=args.access_log,
        log_level=args.log_level,
    )
    return 0
