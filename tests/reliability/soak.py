"""The soak: thousands of requests through the emulator with random faults at a few percent.

Each prompt file is one partition; it is materialized, then re-executed while its run failed for a
retryable reason (the retry sensor's rule), up to ``max_runs`` times. The audit then counts
created tasks, stored images, duplicates, losses and requests paid twice. Last, the operator's
reconciliation: every request left unconfirmed is looked up in the task log (the emulator's task
list stands in for kie.ai's dashboard; a request's task is found by its prompt) and settled with the
real ``dagster-kie ledger confirm`` (its task exists) or ``dagster-kie ledger forget --yes`` (none
was created); the partitions are run again and audited a second time.

    python -m tests.reliability.soak                    # 2,000 requests, polling and callbacks
    python -m tests.reliability.soak --requests 500 --mode callbacks
    python -m tests.reliability.soak --write            # ...and put the figures in RELIABILITY.md
    python -m tests.reliability.soak --tables --write   # run tests/reliability, write its tables

``test_soak.py`` runs a smaller soak as a normal test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_kie.callbacks import CallbackReceiverProcess
from dagster_kie.emulator import EmulatorProcess
from dagster_kie.local_s3 import LocalS3Server
from tests.reliability.helpers import ROOT, Audit, Rig, failure_message, prompt_lines
from tests.reliability.report import REPORT_ENV

HMAC_KEY = "soak-hmac-key"
BUCKET = "kie-soak"
DOC = ROOT / "RELIABILITY.md"


def fault_plan(fraction: float, drop_when: str) -> dict[str, dict[str, Any]]:
    """Random faults, each at about ``fraction`` of the matching events (never all at once)."""
    return {
        "rate_limit_storm": {"fraction": fraction, "endpoint": "api", "retry_after": 1},
        "server_error": {"fraction": fraction, "endpoint": "api"},
        "malformed_json": {"fraction": fraction / 2, "endpoint": "api"},
        "drop_connection": {"fraction": fraction / 2, "endpoint": "api", "when": drop_when},
        "fail_tasks": {"fraction": fraction},
        "expire_result_urls": {"fraction": 2 * fraction},
    }


@dataclass
class SoakResult:
    mode: str
    requests: int
    files: int
    fraction: float
    elapsed_s: float
    runs: int
    run_outcomes: Counter[str]
    stats: dict[str, Any]
    audit: Audit
    unconfirmed_created: int = 0
    unconfirmed_not_created: int = 0
    messages: list[str] = field(default_factory=list)
    reconciled: Counter[str] = field(default_factory=Counter)
    runs_after: int = 0
    after: Audit | None = None

    def figures(self) -> dict[str, Any]:
        found = self.audit
        stats = self.stats
        failed_tasks = sum(1 for t in found.tasks.values() for x in t if x["state"] == "fail")
        return {
            "mode": self.mode,
            "requests": self.requests,
            "files": self.files,
            "fault_fraction": self.fraction,
            "runs": self.runs,
            "run_outcomes": dict(self.run_outcomes),
            "elapsed_s": round(self.elapsed_s, 1),
            "create_calls": stats["create_calls"],
            "tasks_created": found.tasks_created,
            "tasks_failed_not_charged": failed_tasks,
            "requests_stored": len(found.stored),
            "images_stored": found.images,
            "duplicates": found.duplicates,
            "lost": len(found.lost),
            "paid_twice": len(found.paid_twice),
            "unconfirmed_not_resent": self.unconfirmed_created + self.unconfirmed_not_created,
            "unconfirmed_task_exists": self.unconfirmed_created,
            "faults_triggered": dict(stats["faults_triggered"]),
            "connections_dropped": stats["connections_dropped"],
            "rate_limited": stats["rate_limited"].get("total", 0),
            "download_url_calls": stats["query_calls"].get("download_url", 0),
            **self._after_figures(),
        }

    def _after_figures(self) -> dict[str, Any]:
        after = self.after
        if after is None:
            return {}
        return {
            "confirmed": self.reconciled["confirmed"],
            "forgotten": self.reconciled["forgotten"],
            "runs_after": self.runs_after,
            "requests_stored_after": len(after.stored),
            "failed_for_good_after": sum(
                1 for rid in after.requests if after.state_of(rid) == "failed"
            ),
            "duplicates_after": after.duplicates,
            "paid_twice_after": len(after.paid_twice),
            "unconfirmed_after": after.summary()["unconfirmed"],
            "lost_after": len(after.lost),
        }


def emulator_for_soak(random_seed: int) -> EmulatorProcess:
    """The soak's emulator: short tasks, limits out of the way, callbacks signed with HMAC_KEY."""
    return EmulatorProcess(
        task_duration=0.6,
        task_jitter=0.66,
        task_duration_dist="uniform",
        create_limit=5000,
        create_window=1.0,
        query_limit=5000,
        initial_credits=1_000_000,
        webhook_hmac_key=HMAC_KEY,
        random_seed=random_seed,
    )


@contextlib.contextmanager
def _receiver(
    s3: LocalS3Server, bucket: str, mode: str
) -> Iterator[CallbackReceiverProcess | None]:
    if mode != "callbacks":
        yield None
        return
    with CallbackReceiverProcess(
        bucket=bucket, prefix="kie", hmac_key=HMAC_KEY, env=s3.env()
    ) as receiver:
        yield receiver


def run_soak(
    *,
    requests: int = 2000,
    files: int = 4,
    fraction: float = 0.03,
    mode: str = "polling",
    max_runs: int = 6,
    wait_timeout_s: float = 30.0,
    emulator: EmulatorProcess | None = None,
    s3_server: LocalS3Server | None = None,
    bucket: str = BUCKET,
    workdir: Path | None = None,
    log: Any = print,
) -> SoakResult:
    """Run a soak on its own servers (or the given ones) and audit it."""
    os.environ.setdefault("KIE_POLL_INTERVAL_SCALE", "0.1")
    with contextlib.ExitStack() as stack:
        folder = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if s3_server is None:
            s3_server = stack.enter_context(LocalS3Server(buckets=[bucket]))
        else:
            s3_server.create_bucket(bucket)
        if emulator is None:
            emulator = stack.enter_context(emulator_for_soak(random_seed=7))
        receiver = stack.enter_context(_receiver(s3_server, bucket, mode))
        home = folder / "dagster_home"
        home.mkdir(exist_ok=True)
        instance = stack.enter_context(dg.instance_for_test(temp_dir=str(home)))
        prompts = folder / "prompts"
        prompts.mkdir(exist_ok=True)
        emulator.admin.reset()
        rig = Rig(
            emulator=emulator,
            s3_server=s3_server,
            s3=s3_server.client(),
            bucket=bucket,
            prompts_dir=prompts,
            instance=instance,
            callback_url=receiver.url if receiver else None,
            create_tasks_per_window=300,
            create_window_seconds=1.0,
            queries_per_second=400,
            wait_timeout_seconds=wait_timeout_s,
        )
        per_file = -(-requests // files)
        partitions = []
        for index in range(files):
            count = min(per_file, requests - index * per_file)
            name = f"soak-{mode}-{index}"
            text = "\n".join(
                prompt_lines(name, 1, start=i, num_images=2 if i % 5 == 0 else 1)
                for i in range(count)
            )
            partitions.append(rig.write(f"{name}.jsonl", text))
        started = time.monotonic()
        outcomes: Counter[str] = Counter()
        runs = 0
        messages = []
        for index, partition in enumerate(partitions):
            emulator.admin.set_faults(
                fault_plan(fraction, "before" if index % 2 == 0 else "after"), clear=True
            )
            for attempt in range(1, max_runs + 1):
                result = rig.materialize(partition)
                runs += 1
                outcome = "success" if result.success else _kind(result)
                outcomes[outcome] += 1
                log(f"  {partition} run {attempt}: {outcome} {failure_message(result)[:160]}")
                if outcome != "retryable failure":
                    if not result.success:
                        messages.append(failure_message(result))
                    break
        emulator.admin.clear_faults()
        elapsed = time.monotonic() - started
        found = rig.audit()
        unconfirmed = [rid for rid in found.requests if found.state_of(rid) == "submitting"]
        created = sum(1 for rid in unconfirmed if _live_tasks(found, rid))
        reconciled = reconcile(found, emulator, s3_server, bucket)
        log(f"  reconciled: {_counts(reconciled)}")
        runs_after = 0
        for partition in partitions:
            runs_after += len(rig.until_done(partition, max_runs))
        return SoakResult(
            mode=mode,
            requests=requests,
            files=files,
            fraction=fraction,
            elapsed_s=elapsed,
            runs=runs,
            run_outcomes=outcomes,
            stats=emulator.admin.stats(),
            audit=found,
            unconfirmed_created=created,
            unconfirmed_not_created=len(unconfirmed) - created,
            messages=messages,
            reconciled=reconciled,
            runs_after=runs_after,
            after=rig.audit(),
        )


def reconcile(
    found: Audit, emulator: EmulatorProcess, s3_server: LocalS3Server, bucket: str
) -> Counter[str]:
    """Settle every unconfirmed request the way an operator would, with ``dagster-kie ledger``.

    The operator finds the request's task in the task log by its prompt (``found.tasks``: the
    emulator's task list), looking past failed ones (not charged): one → ``confirm`` it (the next
    run stores its images), none → ``forget --yes`` (the next run sends it). The commands run
    through the CLI's own entry point, checks included (``confirm`` looks the task up on kie.ai).
    """
    from dagster_kie.cli import main as cli_main

    done: Counter[str] = Counter()
    env = {**s3_server.env(), "KIE_S3_BUCKET": bucket, "KIE_S3_PREFIX": "kie"}
    kie = ["--api-key", emulator.api_key, "--base-url", emulator.base_url]
    with _environment(env), contextlib.redirect_stdout(io.StringIO()):
        for rid in found.requests:
            if found.state_of(rid) != "submitting":
                continue
            live = _live_tasks(found, rid)
            if len(live) == 1:
                args, outcome = ["ledger", "confirm", rid, live[0]["taskId"]], "confirmed"
            elif not live:
                args, outcome = ["ledger", "forget", rid, "--yes"], "forgotten"
            else:  # two live tasks for one request: paid twice, for the audit to report
                done["left alone"] += 1
                continue
            code = cli_main([*kie, *args])
            done[outcome if code == 0 else f"{outcome} refused (exit {code})"] += 1
    return done


def _live_tasks(found: Audit, rid: str) -> list[dict[str, Any]]:
    """A request's tasks that did not fail (failed ones are not charged: earlier attempts)."""
    return [task for task in found.tasks[rid] if task["state"] != "fail"]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _kind(result: dg.ExecuteInProcessResult) -> str:
    from tests.reliability.helpers import failure_retryable

    return "retryable failure" if failure_retryable(result) else "clear failure"


# -- RELIABILITY.md ------------------------------------------------------------------------------


def _replace_block(name: str, body: str) -> None:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = DOC.read_text(encoding="utf-8")
    head, found, rest = text.partition(begin)
    if not found:
        raise SystemExit(f"{DOC} has no {begin} marker")
    _, found, tail = rest.partition(end)
    if not found:
        raise SystemExit(f"{DOC} has no {end} marker")
    DOC.write_text(f"{head}{begin}\n{body.strip()}\n{end}{tail}", encoding="utf-8")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items()))


def soak_table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("requests (prompt files)", lambda r: f"{r['requests']:,} ({r['files']})"),
        ("random faults", lambda r: f"~{r['fault_fraction']:.0%} of API calls / tasks each"),
        ("faults triggered", lambda r: _counts(r["faults_triggered"])),
        ("runs (outcomes)", lambda r: f"{r['runs']} ({_counts(r['run_outcomes'])})"),
        ("wall time", lambda r: f"{r['elapsed_s']:.0f} s"),
        ("createTask calls", lambda r: f"{r['create_calls']:,}"),
        ("tasks created", lambda r: f"{r['tasks_created']:,}"),
        ("tasks that failed (not charged)", lambda r: f"{r['tasks_failed_not_charged']}"),
        ("requests stored", lambda r: f"{r['requests_stored']:,}"),
        ("images stored", lambda r: f"{r['images_stored']:,}"),
        ("**duplicates**", lambda r: f"**{r['duplicates']}**"),
        ("**paid twice**", lambda r: f"**{r['paid_twice']}**"),
        ("unconfirmed, not resent (task exists / never created)",
         lambda r: f"{r['unconfirmed_not_resent']} ({r['unconfirmed_task_exists']} / "
                   f"{r['unconfirmed_not_resent'] - r['unconfirmed_task_exists']})"),
        ("**lost** before reconciliation (paid, not stored, named in the run's failure)",
         lambda r: f"**{r['lost']}**"),
        ("reconciled with `dagster-kie ledger` (confirm / forget --yes)",
         lambda r: f"{r['confirmed']} / {r['forgotten']}"),
        ("runs after reconciliation", lambda r: f"{r['runs_after']}"),
        ("requests stored after (failed for good)",
         lambda r: f"{r['requests_stored_after']:,} ({r['failed_for_good_after']})"),
        ("duplicates / paid twice / unconfirmed after",
         lambda r: f"{r['duplicates_after']} / {r['paid_twice_after']} / "
                   f"{r['unconfirmed_after']}"),
        ("**lost** after reconciliation", lambda r: f"**{r['lost_after']}**"),
    ]  # fmt: skip
    header = "| | " + " | ".join(f"{r['mode']} mode" for r in results) + " |"
    lines = [header, "|---|" + "---|" * len(results)]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in results) + " |")
    return "\n".join(lines)


def tables(rows: list[dict[str, Any]]) -> dict[str, str]:
    def cell(value: Any) -> str:
        return str(value).replace("|", "/").replace("\n", " ")

    def lost(row: dict[str, Any]) -> str:
        return cell(row.get("lost", 0))

    def essence(message: str, limit: int = 170) -> str:
        text = message.split("First: ", 1)[-1]
        return cell(text if len(text) <= limit else text[: limit - 1] + "…")

    faults = [
        "| fault injected | how often | mode | runs | what happened | tasks / requests "
        "| images | dup | paid twice | lost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["section"] == "faults"):
        if r["runs"] > 1:
            what = f"run 1 failed, retryable: “{essence(r['message'])}”; run {r['runs']}: "
            what += r["outcome"]
        else:
            what = r["outcome"] + (f": “{essence(r['message'])}”" if r["message"] else "")
        faults.append(
            f"| `{cell(r['injected'])}` | {cell(r['how_often'])} | {r['mode']} | {r['runs']} | "
            f"{what} | {r['tasks_created']} / {r['requests']} | {r['images_stored']} | "
            f"{r['duplicates']} | {r['paid_twice']} | {lost(r)} |"
        )
    for r in (r for r in rows if r["section"] == "s3"):
        faults.append(
            f"| {cell(r['fault'])} | one outage of {r['outage_seconds']} s | polling | 2 | "
            f"first run {r['first_run']}, {r['outcome']} | {r['tasks_created']} / "
            f"{r['requests']} | {r['images_stored']} | {r['duplicates']} | {r['paid_twice']} | "
            f"{lost(r)} |"
        )
    crash = [
        "| kill -9 at | mode | killed when | after re-execution | tasks / requests | images "
        "| dup | paid twice | unconfirmed | lost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["section"] == "crash"):
        crash.append(
            f"| {r['stage']} | {r['mode']} | {cell(r['killed_at'])} | {cell(r['outcome'])} | "
            f"{r['tasks_created']} / {r['requests']} | {r['images_stored']} | {r['duplicates']} | "
            f"{r['paid_twice']} | {r['unconfirmed']} | {lost(r)} |"
        )
    budget = ["| case | what the user sees |", "|---|---|"]
    for r in (r for r in rows if r["section"] == "budget"):
        budget.append(f"| {cell(r['case'])} | “{essence(r['message'], 400)}” |")
    security = ["| check | result |", "|---|---|"]
    for r in (r for r in rows if r["section"] == "security"):
        detail = r.get("scanned") or f"“{essence(r.get('message', ''))}”"
        security.append(f"| {cell(r['check'])} | {cell(detail)}; leaks: {r['leaks']} |")
    return {
        "faults": "\n".join(faults),
        "crash": "\n".join(crash),
        "budget": "\n".join(budget),
        "security": "\n".join(security),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--fraction", type=float, default=0.03, help="fault probability")
    parser.add_argument("--mode", choices=["polling", "callbacks", "both"], default="both")
    parser.add_argument("--tables", action="store_true", help="run tests/reliability for tables")
    parser.add_argument("--write", action="store_true", help="write the figures to RELIABILITY.md")
    args = parser.parse_args(argv)

    if args.tables:
        with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as report:
            path = report.name
        env = {**os.environ, REPORT_ENV: path}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "tests/reliability", "--deselect", "tests/reliability/test_soak.py"]  # fmt: skip
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
        built = tables(rows)
        for name, body in built.items():
            print(f"\n## {name}\n{body}")
            if args.write:
                _replace_block(name, body)
        if code != 0:
            print(f"tests/reliability failed (exit {code}): tables may be incomplete")
            return code
        return 0

    modes = ["polling", "callbacks"] if args.mode == "both" else [args.mode]
    results = []
    for mode in modes:
        print(f"soak: {args.requests} requests, {mode} mode, faults at {args.fraction:.0%}")
        result = run_soak(requests=args.requests, files=args.files, fraction=args.fraction,
                          mode=mode)  # fmt: skip
        figures = result.figures()
        print(json.dumps(figures, indent=2))
        results.append(figures)
    table = soak_table(results)
    print(table)
    if args.write:
        _replace_block("soak", table)
    clean = all(
        r["duplicates"] == 0 and r["paid_twice_after"] == 0 and r["lost_after"] == 0
        for r in results
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
