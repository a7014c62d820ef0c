"""The receiver's command line and launcher: arguments, the HMAC key's handling, light imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dagster_kie.callbacks import CallbackReceiverProcess
from dagster_kie.callbacks.cli import build_parser, main
from dagster_kie.callbacks.process import parse_ready_line

from .helpers import KEY


def test_defaults_come_from_the_environment() -> None:
    args = build_parser({"KIE_S3_BUCKET": "imgs", "KIE_S3_PREFIX": "team/kie/"}).parse_args([])
    assert (args.bucket, args.prefix, args.path) == ("imgs", "team/kie", "/kie/callback")
    assert (args.host, args.hmac_key_env) == ("127.0.0.1", None)


def test_bucket_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--port", "0"], env={})
    assert caught.value.code == 2
    assert "--bucket is required" in capsys.readouterr().err


def test_missing_hmac_key_variable_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--bucket", "b", "--hmac-key-env", "MY_KEY"], env={"MY_KEY": ""})
    assert caught.value.code == 2
    assert "environment variable MY_KEY is not set" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--bucket", "b", "--hmac-key", KEY],  # no abbreviation of --hmac-key-env
        ["--bucket", "b", f"--hmac-key={KEY}"],
        ["--bucket", "b", KEY],
        ["--bucket", "b", "--hmac-key-env", KEY],  # a key where a variable name belongs
    ],
)
def test_a_key_on_the_command_line_is_refused_and_not_echoed(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv, env={})
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert KEY not in err
    assert "unrecognized arguments" in err or "NAME of an environment variable" in err


def test_launcher_passes_the_key_by_environment_only() -> None:
    process = CallbackReceiverProcess(bucket="b", hmac_key=KEY, env={"AWS_REGION": "x"})
    assert KEY not in " ".join(process.argv)
    assert process.argv[process.argv.index("--hmac-key-env") + 1] == "KIE_WEBHOOK_HMAC_KEY"
    assert KEY not in repr(process)
    assert process._env is not None and process._env["KIE_WEBHOOK_HMAC_KEY"] == KEY
    unsigned = CallbackReceiverProcess(bucket="b")
    assert "--hmac-key-env" not in unsigned.argv


def test_parse_ready_line() -> None:
    line = 'KIE_CALLBACKS_READY {"url": "http://127.0.0.1:1/kie/callback", "pid": 7}'
    assert parse_ready_line(line) == {"url": "http://127.0.0.1:1/kie/callback", "pid": 7}
    assert parse_ready_line("INFO something else") is None


def test_package_import_is_light() -> None:
    code = (
        "import sys, dagster_kie.callbacks as c, dagster_kie.callbacks.process;"
        "c.sign('t', 1, 'k'); c.callback_url_for('http://h/cb', 'r');"
        "heavy = [m for m in ('dagster', 'starlette', 'uvicorn', 'boto3', 'pydantic')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_runs_without_dagster() -> None:
    code = (
        "import sys, runpy; sys.argv = ['x', '--help']\n"
        "try:\n    runpy.run_module('dagster_kie.callbacks', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('DAGSTER' if 'dagster' in sys.modules else 'CLEAN')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--hmac-key-env" in out.stdout
    assert out.stdout.strip().endswith("CLEAN")
