"""``dagster-kie``: try kie.ai's Ideogram models from a shell, before writing any code.

Exit codes scripts can rely on:

====  ==========================================================================
0     success
1     the request ran but failed (generation failed, invalid prompt records), or the ledger
      refused a change (nothing was changed)
2     usage error (bad option or argument, invalid request fields, ``ledger forget``
      without ``--yes``): nothing was sent or changed
3     kie.ai refused permanently (bad key, no credits, feature disabled, not found)
4     transient failure (rate limit, maintenance, server or network error, timeout):
      try again later
====  ==========================================================================
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from pydantic import ValidationError

from dagster_kie import __version__
from dagster_kie.errors import KieError

if TYPE_CHECKING:
    from dagster_kie.ledger import LedgerEntry, TaskLedger

__all__ = ["main"]

EXIT_FAILED, EXIT_USAGE, EXIT_PERMANENT, EXIT_TRANSIENT = 1, 2, 3, 4
MODELS = ("ideogram/v3-text-to-image", "ideogram/v3-reframe", "ideogram/character")
IMAGE_SIZES = ("square", "square_hd", "portrait_4_3", "portrait_16_9", "landscape_4_3",
               "landscape_16_9")  # fmt: skip


def _fail(error: KieError) -> NoReturn:
    click.secho(f"Error: {error}", fg="red", err=True)
    sys.exit(EXIT_TRANSIENT if error.retryable else EXIT_PERMANENT)


def _refuse(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(code)


def _plural(count: int, word: str, plural: str | None = None) -> str:
    """``1 task``, ``2 tasks`` (``plural`` for irregular words)."""
    return f"{count} {word if count == 1 else plural or word + 's'}"


class _Settings:
    def __init__(self, api_key: str | None, base_url: str, upload_base_url: str,
                 allow_private: bool) -> None:  # fmt: skip
        self.api_key = api_key
        self.base_url = base_url
        self.upload_base_url = upload_base_url
        self.allow_private = allow_private

    def client(self) -> Any:
        from dagster_kie.client import KieClient
        from dagster_kie.download import DownloadPolicy

        if not self.api_key:
            raise click.UsageError("no API key: pass --api-key or set KIE_API_KEY")
        return KieClient(
            self.api_key,
            base_url=self.base_url,
            upload_base_url=self.upload_base_url,
            download_policy=DownloadPolicy(allow_private_addresses=self.allow_private),
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dagster-kie")
@click.option("--api-key", envvar="KIE_API_KEY", show_envvar=True, help="kie.ai API key.")
@click.option(
    "--base-url",
    envvar="KIE_BASE_URL",
    show_envvar=True,
    default="https://api.kie.ai",
    show_default=True,
    help="Jobs API base URL.",
)
@click.option(
    "--upload-base-url",
    envvar="KIE_UPLOAD_BASE_URL",
    show_envvar=True,
    default="https://kieai.redpandaai.co",
    show_default=True,
    help="File-upload API base URL.",
)
@click.option(
    "--allow-private-downloads",
    is_flag=True,
    envvar="KIE_ALLOW_PRIVATE_DOWNLOADS",
    help="Allow result downloads from loopback/private addresses (local emulator).",
)
@click.pass_context
def cli(ctx: click.Context, api_key: str | None, base_url: str, upload_base_url: str,
        allow_private_downloads: bool) -> None:  # fmt: skip
    """kie.ai's Ideogram image models from the command line.

    \b
    dagster-kie emulator --port 8000          # a local kie.ai to play with
    dagster-kie generate "a red fox" --out images/
    dagster-kie credits
    dagster-kie task <task id>
    dagster-kie validate prompts/*.jsonl      # check prompt files, spend nothing
    dagster-kie ledger list --state submitting  # requests a crash left unconfirmed
    """
    ctx.obj = _Settings(api_key, base_url, upload_base_url, allow_private_downloads)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})  # fmt: skip
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def emulator(args: Sequence[str]) -> None:
    """Start the local kie.ai emulator (all its flags: dagster-kie emulator --help)."""
    from dagster_kie.emulator.cli import main as emulator_main

    sys.exit(emulator_main(list(args)))


@cli.command()
@click.argument("prompt", required=False)
@click.option("--model", type=click.Choice(MODELS), default=MODELS[0], show_default=True)
@click.option("--image-size", type=click.Choice(IMAGE_SIZES))
@click.option("--num-images", type=click.IntRange(1, 4))
@click.option("--rendering-speed", type=click.Choice(["TURBO", "BALANCED", "QUALITY"]))
@click.option(
    "--style", help="AUTO, GENERAL, REALISTIC, DESIGN (character: AUTO, REALISTIC, FICTION)"
)
@click.option("--seed", type=int)
@click.option("--negative-prompt")
@click.option(
    "--image",
    "images",
    multiple=True,
    help="Input image (URL or local file): reframe's image_url, character's references.",
)
@click.option("--input", "input_json", help="Extra input fields as a JSON object.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the images.",
)
@click.option(
    "--timeout", type=float, default=900.0, show_default=True, help="Seconds to wait for the task."
)
@click.pass_obj
def generate(settings: _Settings, prompt: str | None, model: str, image_size: str | None,
             num_images: int | None, rendering_speed: str | None, style: str | None,
             seed: int | None, negative_prompt: str | None, images: tuple[str, ...],
             input_json: str | None, out: Path, timeout: float) -> None:  # fmt: skip
    """Generate images for one request and save them in --out."""
    from dagster_kie.models import parse_request

    fields: dict[str, Any] = json.loads(input_json) if input_json else {}
    options = {"prompt": prompt, "image_size": image_size, "rendering_speed": rendering_speed,
               "style": style, "seed": seed, "negative_prompt": negative_prompt,
               "num_images": str(num_images) if num_images else None}  # fmt: skip
    fields.update({key: value for key, value in options.items() if value is not None})
    try:
        request = parse_request({"model": model, "input": _with_images(model, fields, images)})
    except ValidationError as error:
        raise click.UsageError(_explain(error)) from None
    with settings.client() as client:
        try:
            request = _upload_local_images(client, request)
            task_id = client.create_task(request)
            click.echo(f"task {task_id} created; waiting ...", err=True)
            record = client.wait(
                task_id, timeout=timeout, model=model,
                on_update=lambda r: click.echo(f"  {r.state}", err=True),
            )  # fmt: skip
            out.mkdir(parents=True, exist_ok=True)
            for index, url in enumerate(record.result_urls):
                target = out / f"{task_id}-{index}.png"
                _save(client, url, target)
                click.echo(str(target))
        except KieError as error:
            _fail(error)
        if record.credits_consumed is not None:
            click.echo(f"credits consumed: {record.credits_consumed:g}", err=True)


def _with_images(model: str, fields: dict[str, Any], images: tuple[str, ...]) -> dict[str, Any]:
    if not images:
        return fields
    if model == "ideogram/v3-reframe":
        return {**fields, "image_url": images[0]}
    if model == "ideogram/character":
        return {**fields, "reference_image_urls": list(images)}
    raise click.UsageError(f"--image is not an input of {model}")


def _upload_local_images(client: Any, request: Any) -> Any:
    from dagster_kie.models import image_sources, with_image_sources

    resolved = {}
    for source in image_sources(request):
        if not source.startswith(("http://", "https://")):
            click.echo(f"uploading {source} ...", err=True)
            resolved[source] = str(client.upload_file(Path(source)).url)
    return with_image_sources(request, resolved)


def _save(client: Any, url: str, target: Path) -> None:
    with (
        client.stream_download(url) as download,
        target.open("wb") as sink,
        click.progressbar(length=0, label=target.name, file=sys.stderr) as bar,
    ):
        for chunk in download.iter_bytes():
            sink.write(chunk)
            bar.update(len(chunk))


def _explain(error: ValidationError) -> str:
    lines = ["invalid request, nothing was sent:"]
    for item in error.errors(include_url=False):
        loc = ".".join(str(part) for part in item["loc"] if "/" not in str(part))
        lines.append(f"  {loc}: {item['msg']}")
    return "\n".join(lines)


@cli.command()
@click.pass_obj
def credits(settings: _Settings) -> None:
    """Show the account's credit balance."""
    with settings.client() as client:
        try:
            click.echo(f"{client.get_credits():g}")
        except KieError as error:
            _fail(error)


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@click.pass_obj
def task(settings: _Settings, task_id: str, as_json: bool) -> None:
    """Show one task: state, result URLs, failure, cost."""
    with settings.client() as client:
        try:
            record = client.get_task(task_id)
        except KieError as error:
            _fail(error)
    if as_json:
        click.echo(record.model_dump_json(indent=2))
        return
    click.echo(f"task     {record.task_id}\nmodel    {record.model}\nstate    {record.state}")
    for url in record.result_urls:
        click.echo(f"result   {url}")
    if record.fail_code or record.fail_msg:
        click.echo(f"failure  {record.fail_code}: {record.fail_msg}")
    if record.credits_consumed is not None:
        click.echo(f"credits  {record.credits_consumed:g}")


@cli.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))  # fmt: skip
@click.option(
    "--credits-per-image",
    type=float,
    default=1.6,
    show_default=True,
    help="Price used for the estimate.",
)
@click.option(
    "--model",
    type=click.Choice(MODELS),
    default=MODELS[0],
    show_default=True,
    help="Model of records that do not name one (text lines, shorthand records).",
)
@click.option("--default", "defaults", multiple=True, metavar="KEY=VALUE",
              help="Input field applied to every record that does not set it (repeatable); "
                   "VALUE is JSON, or else a plain string.")  # fmt: skip
def validate(files: tuple[Path, ...], credits_per_image: float, model: str,
             defaults: tuple[str, ...]) -> None:  # fmt: skip
    """Check prompt files without spending anything (a dry run of a batch).

    Prints every invalid record (file, line, field, allowed values) and how many tasks and images
    the valid ones would create. Exits 1 if any file or record is invalid.
    """
    from dagster_kie.prompts import PromptFileError, RecordDefaults, parse_prompt_file

    try:
        record_defaults = RecordDefaults(model, _parse_defaults(defaults))
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    tasks = images = bad = 0
    for path in files:
        try:
            batch = parse_prompt_file(path.name, path.read_bytes(), defaults=record_defaults)
        except PromptFileError as error:
            click.secho(f"{path}: {error.reason}", fg="red")
            bad += 1
            continue
        for record in batch.invalid:
            click.secho(f"{path}:{record.line}: " + "; ".join(record.errors), fg="red")
        bad += len(batch.invalid)
        tasks += len(batch.parsed)
        images += batch.num_images
        click.echo(f"{path}: {len(batch.parsed)} valid, {len(batch.invalid)} invalid, "
                   f"{_plural(batch.duplicates, 'duplicate record')}")  # fmt: skip
    click.echo(f"would create {_plural(tasks, 'task')} and {_plural(images, 'image')} "
               f"(~{images * credits_per_image:g} credits); "
               f"{_plural(bad, 'problem')}")  # fmt: skip
    sys.exit(EXIT_FAILED if bad else 0)


def _parse_defaults(items: Sequence[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--default {item!r}: expected KEY=VALUE")
        try:
            parsed[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            parsed[key.strip()] = text
    return parsed


LEDGER_STATES = ("submitting", "submitted", "succeeded", "failed")


@cli.group()
def ledger() -> None:
    """Inspect and repair the task ledger in S3 (request id -> kie.ai task).

    \b
    A run that stops between createTask and recording the task id leaves the
    request "unconfirmed" (state submitting): a task may exist, paid for, and
    without callbacks no run can find it, so it is never sent again. Find the
    task in kie.ai's dashboard (logs of your API key), then either
      dagster-kie ledger confirm REQUEST_ID TASK_ID   # next run stores its images
      dagster-kie ledger forget REQUEST_ID --yes      # no task exists: send again
    S3: --bucket/--prefix (KIE_S3_BUCKET, KIE_S3_PREFIX) and the AWS_* environment.
    """


def _ledger_options(command: Any) -> Any:
    command = click.option(
        "--prefix",
        envvar="KIE_S3_PREFIX",
        show_envvar=True,
        default="kie",
        show_default=True,
        help="S3 key prefix of the images and the ledger.",
    )(command)
    return click.option(
        "--bucket",
        envvar="KIE_S3_BUCKET",
        show_envvar=True,
        required=True,
        help="S3 bucket of the images and the ledger (endpoint and credentials: AWS_*).",
    )(command)


def _open_ledger(bucket: str, prefix: str) -> TaskLedger:
    from dagster_kie.callbacks.s3 import s3_client_from_env
    from dagster_kie.ledger import TaskLedger

    try:
        return TaskLedger(s3_client_from_env(), bucket, prefix.strip("/") or "kie")
    except ValueError as error:  # an unsafe prefix
        raise click.BadParameter(str(error), param_hint="--prefix") from None


@contextmanager
def _s3_errors(store: TaskLedger) -> Iterator[None]:
    """S3 and ledger failures as one clear line and an exit code (request ids checked first)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dagster_kie.batch import is_transient_error
    from dagster_kie.ledger import LedgerError
    from dagster_kie.storage import UnsafeKeyError

    where = f"s3://{store.bucket}/{store.folder}"
    try:
        yield
    except UnsafeKeyError as error:
        raise click.BadParameter(str(error), param_hint="REQUEST_ID") from None
    except LedgerError as error:
        _refuse(f"the ledger at {where} is unreadable: {error}")
    except (BotoCoreError, ClientError) as error:
        code = EXIT_TRANSIENT if is_transient_error(error) else EXIT_PERMANENT
        _refuse(f"cannot use the ledger at {where}: {error}", code)


def _read_entry(store: TaskLedger, request_id: str) -> LedgerEntry:
    with _s3_errors(store):
        entry = store.get(request_id)
    if entry is None:
        _refuse(
            f"the ledger has no entry for request {request_id} "
            f"(s3://{store.bucket}/{store.folder}); nothing changed"
        )
    return entry


@ledger.command("list")
@click.option("--state", type=click.Choice(LEDGER_STATES),
              help="Only entries in this state (submitting: unconfirmed).")  # fmt: skip
@_ledger_options
def ledger_list(state: str | None, bucket: str, prefix: str) -> None:
    """List entries: request id, model, state, task id, last update.

    Oldest first; a summary (and what to do about unconfirmed requests) goes to stderr.
    """
    store = _open_ledger(bucket, prefix)
    with _s3_errors(store):
        entries = store.list_all().values()
    shown = sorted(
        (entry for entry in entries if state is None or entry.state == state),
        key=lambda entry: (entry.updated_at, entry.request_id),
    )
    rows = [("REQUEST ID", "MODEL", "STATE", "TASK ID", "UPDATED")]
    rows += [(e.request_id, e.model or "-", e.state, e.task_id or "-", e.updated_at or "-")
             for e in shown]  # fmt: skip
    if shown:
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            click.echo("  ".join([*cells, row[4]]))
    where = f"in state {state} " if state else ""
    click.echo(f"{_plural(len(shown), 'entry', 'entries')} {where}"
               f"in s3://{store.bucket}/{store.folder}", err=True)  # fmt: skip
    unconfirmed = sum(1 for entry in shown if entry.state == "submitting")
    if unconfirmed:
        click.echo(
            f"{_plural(unconfirmed, 'request')} unconfirmed (submitting): if a run is still "
            "submitting it, wait; otherwise find its task in kie.ai's dashboard and run "
            "'dagster-kie ledger confirm REQUEST_ID TASK_ID', or, if no task was created, "
            "'dagster-kie ledger forget REQUEST_ID --yes'",
            err=True,
        )


@ledger.command("confirm")
@click.argument("request_id")
@click.argument("task_id")
@click.option("--no-check", is_flag=True,
              help="Do not look the task up on kie.ai first (it is looked up when an API key "
                   "is set).")  # fmt: skip
@_ledger_options
@click.pass_obj
def ledger_confirm(settings: _Settings, request_id: str, task_id: str, no_check: bool,
                   bucket: str, prefix: str) -> None:  # fmt: skip
    """Record the task of an unconfirmed request: the next run stores its images.

    Use it when a run reported the request "unconfirmed" and you found its task (e.g. in kie.ai's
    dashboard logs): the entry becomes "submitted" with that task id, so the next run waits for
    that task and stores its images instead of losing them; nothing is sent again. Refused unless
    the request is in state submitting. With an API key the task is looked up on kie.ai first and
    must exist and be of the request's model.
    """
    task_id = task_id.strip()
    if not task_id:
        raise click.BadParameter("must not be empty", param_hint="TASK_ID")
    store = _open_ledger(bucket, prefix)
    entry = _read_entry(store, request_id)
    if entry.task_id == task_id and entry.state != "submitting":
        click.echo(f"request {request_id} already records task {task_id} ({entry.state}); "
                   "nothing changed")  # fmt: skip
        return
    _check_confirmable(entry, task_id)
    if no_check:
        click.echo("not checked on kie.ai (--no-check): make sure the task id is right", err=True)
    elif not settings.api_key:
        click.echo("not checked on kie.ai (no API key): make sure the task id is right", err=True)
    else:
        _check_task_on_kie(settings, entry, task_id)
    # Read again just before writing: the callback receiver may have recorded a task meanwhile.
    entry = _read_entry(store, request_id)
    _check_confirmable(entry, task_id)
    with _s3_errors(store):
        store.record_submitted(request_id, entry.model, task_id)
    click.echo(f"request {request_id} now records task {task_id} (submitted): the next run waits "
               "for it and stores its images; nothing is sent again")  # fmt: skip


def _check_confirmable(entry: LedgerEntry, task_id: str) -> None:
    if entry.task_id and entry.task_id != task_id:
        _refuse(
            f"request {entry.request_id} already records task {entry.task_id} ({entry.state}), "
            f"not {task_id}; nothing changed (a request has one task: if {entry.task_id} is "
            "wrong, check it on kie.ai before changing anything)"
        )
    if entry.state != "submitting":
        _refuse(
            f"request {entry.request_id} is {entry.state}, not unconfirmed (submitting); only "
            "an unconfirmed request can be confirmed; nothing changed"
        )


def _check_task_on_kie(settings: _Settings, entry: LedgerEntry, task_id: str) -> None:
    from dagster_kie.errors import NotFoundError

    with settings.client() as client:
        try:
            record = client.get_task(task_id)
        except NotFoundError:
            _refuse(f"kie.ai has no task {task_id}: check the id; nothing changed")
        except KieError as error:
            _fail(error)
    if entry.model and record.model and record.model != entry.model:
        _refuse(
            f"task {task_id} is a {record.model} task but request {entry.request_id} is "
            f"{entry.model}: it is not this request's task; nothing changed"
        )
    click.echo(f"kie.ai: task {task_id} is {record.state}", err=True)


@ledger.command("forget")
@click.argument("request_id")
@click.option("--yes", is_flag=True, help="Forget it even though this may pay twice.")
@_ledger_options
def ledger_forget(request_id: str, yes: bool, bucket: str, prefix: str) -> None:
    """Remove a request's entry: the next run sends it again (may pay twice).

    Only when you know no task was created for it (or, for a failed request, you want a new
    one): if an unconfirmed request's task did exist, this pays for it twice and that task's
    images are never stored. Requires --yes. A request with a live or finished task (submitted,
    succeeded) is refused: the next run resumes or keeps it.
    """
    store = _open_ledger(bucket, prefix)
    with _s3_errors(store):
        entry = store.get(request_id)
    if entry is None:
        click.echo(f"the ledger has no entry for request {request_id}; nothing to forget")
        return
    if entry.state in ("submitted", "succeeded"):
        _refuse(
            f"request {request_id} has task {entry.task_id} ({entry.state}): the next run "
            "resumes it, forgetting it would pay again; nothing changed"
        )
    if not yes:
        if entry.state == "submitting":
            risk = (
                f"request {request_id} is unconfirmed (submitting since {entry.updated_at}): if "
                "kie.ai created its task, the next run sends it again and you pay twice (and "
                "that task's images are never stored). If you find the task in kie.ai's "
                f"dashboard, run 'dagster-kie ledger confirm {request_id} TASK_ID' instead."
            )
        else:
            risk = f"request {request_id} failed ({entry.error}); the next run sends it again."
        _refuse(f"{risk} Re-run with --yes to forget it.", EXIT_USAGE)
    with _s3_errors(store):
        store.forget(request_id)
    click.echo(f"request {request_id} forgotten: the next run sends it again")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dagster-kie`` command."""
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.ClickException as error:
        error.show()
        return EXIT_USAGE if isinstance(error, click.UsageError) else EXIT_FAILED
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
