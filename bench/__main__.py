"""``./dev bench``: every contender, N = 100 and 1,000 requests, one table, ``bench/RESULTS.md``.

A local S3 server (SeaweedFS) runs for the whole benchmark; each contender gets a fresh bucket and
a fresh kie.ai emulator process with the same settings, so every contender gets the very same
task durations and an emulator in the same state (``admin.reset()`` rewinds the seeded durations
too; a new process also starts with empty caches and memory). Each contender runs as its own child
process, measured by :mod:`bench.measure`.

    python -m bench                    # N = 100 and 1,000, scale 10 (a quarter of an hour or so)
    python -m bench --quick            # N = 20 smoke run
    python -m bench --sizes 100 --contenders client,dagster --no-profile
    python -m bench --sizes 1000 --task-duration 6 --contenders kieclient,client,dagster
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import boto3
import psutil

from bench import contender_dagster, machine, profiling, timeline
from bench.limit import emulator_durations, latency_floor, limit_seconds
from bench.measure import Measurement, run_measured
from bench.report import Row, added_latency, polls_summary, results_document, table
from bench.workload import ContenderConfig, write_prompt_file
from dagster_kie.callbacks import CallbackReceiverProcess
from dagster_kie.duration_history import DURATIONS_KEY
from dagster_kie.emulator import EmulatorProcess
from dagster_kie.emulator.config import EmulatorSettings
from dagster_kie.local_s3 import LocalS3Server

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CONTENDERS = {
    "naive": "A: naive sequential script",
    "async": "B: asyncio + httpx script",
    "kieclient": "dagster-kie AsyncKieClient",
    "client": "dagster-kie batch engine",
    "dagster": "dagster-kie Dagster",
    "client-warm": "dagster-kie batch engine, warm",
    "dagster-warm": "dagster-kie Dagster, warm",
    "client-callbacks": "dagster-kie batch engine, callbacks",
    "dagster-callbacks": "dagster-kie Dagster, callbacks",
}
WARM = "-warm"
"""A contender named ``<name>-warm`` is ``<name>`` after an earlier, unmeasured run of one create
window's worth of other requests into the same bucket (on an emulator with another seed): the
task durations that run stored in S3 are what the measured run's polling starts from. Its other
objects are deleted before the measured run, which counts and times only its own."""
CALLBACKS = "-callbacks"
"""A contender named ``<name>-callbacks`` is ``<name>`` with callbacks on: the emulator signs and
sends a callback when each task ends, a callback receiver process stores them in the bucket, and
the run reads task ends from there (polling kie.ai only as a fallback)."""
WEBHOOK_HMAC_KEY = "bench-webhook-hmac-key"
MODULES = {
    "naive": "bench.baseline_naive",
    "async": "bench.baseline_async",
    "kieclient": "bench.contender_kieclient",
    "client": "bench.contender_client",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TASK_DURATION_S = 12.0
"""Mean task duration by default: Ideogram V3 at ``BALANCED``, kie.ai's default rendering speed.
kie.ai publishes no timings; Replicate's page for V3 TURBO, the fastest speed, shows a 6.1 s
prediction, and other hosts list 5-15 s per image by model, and 20 s or more per request. The
polling floor is inversely proportional to it: ``--task-duration 6`` is the TURBO case."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--sizes", default="100,1000", help="request counts, comma-separated")
    add("--quick", action="store_true", help="smoke run: N = 20, naive cap 60 s")
    add("--contenders", default=",".join(CONTENDERS), help="subset of " + ",".join(CONTENDERS))
    add("--scale", type=float, default=10.0, help="multiplier of kie.ai's rate limits")
    add(
        "--task-duration",
        type=float,
        default=TASK_DURATION_S,
        help="mean task duration, seconds (6: Ideogram V3 TURBO)",
    )
    add("--task-jitter", type=float, default=0.5, help="lognormal sigma (or uniform fraction)")
    add("--duration-dist", default="lognormal", choices=["fixed", "uniform", "lognormal"])
    add("--seed", type=int, default=20240601, help="emulator random_seed")
    add("--image-size", default="square_hd", help="image_size of every request")
    add("--naive-cap-seconds", type=float, default=300.0)
    add("--naive-poll-seconds", type=float, default=3.0)
    add("--async-poll-seconds", type=float, default=2.0)
    add("--async-concurrency", type=int, default=50)
    add("--async-retry-sleep", type=float, default=1.0, help="fixed sleep after a 429")
    add("--contender-timeout", type=float, default=1800.0)
    add(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="profile one client-level run with py-spy (largest N)",
    )
    add("--output", default=str(BENCH / "RESULTS.md"))
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = "20"
        args.naive_cap_seconds = min(args.naive_cap_seconds, 60.0)
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.contender_list = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(args.contender_list) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")
    return args


def emulator_settings(args: argparse.Namespace) -> EmulatorSettings:
    return EmulatorSettings(
        create_limit=round(20 * args.scale),
        create_window=10.0,
        query_limit=round(10 * args.scale),
        query_window=1.0,
        task_duration=args.task_duration,
        task_jitter=args.task_jitter,
        task_duration_dist=args.duration_dist,
        random_seed=args.seed,
        initial_credits=1e9,
    )


def count_images(s3: Any, bucket: str) -> int:
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        count += sum(1 for o in page.get("Contents", []) if o["Key"].endswith(IMAGE_SUFFIXES))
    return count


def _cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


class Bench:
    """One benchmark session: the S3 server, the settings, the rows so far."""

    def __init__(self, args: argparse.Namespace, s3_server: Any, workdir: Path) -> None:
        self.args = args
        self.s3_server = s3_server
        self.s3 = boto3.client("s3")
        self.settings = emulator_settings(args)
        self.workdir = workdir
        self.logs = BENCH / ".runs" / time.strftime("%Y%m%d-%H%M%S")
        self.logs.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = []

    def poll_seconds(self, name: str) -> float:
        if name == "naive":
            return float(self.args.naive_poll_seconds)
        return float(self.args.async_poll_seconds)

    def profile(self, name: str, size: int) -> str:
        """Run one contender again under py-spy; a Markdown summary of where it spent CPU."""
        raw = self.logs / f"{name}-n{size}.pyspy.txt"
        prompts = self.workdir / f"prompts-n{size}" / "bench.jsonl"
        row = self.run(name, size, prompts, prompts.with_name("bodies.json"), profile_to=raw)
        summary = profiling.summarize(raw) if raw.exists() else "py-spy wrote no output."
        timeline = "".join(f"\n- {note}" for note in row.notes)
        return (
            f"### {CONTENDERS[name]}, N = {size}\n\n"
            f"`py-spy record --nonblocking --subprocesses --format raw` around the contender "
            f"(a separate run, not in the table: "
            f"{row.wall_s:.1f} s wall under the profiler, {row.cpu_s:.1f} s CPU, "
            f"{row.images_stored} images).{timeline}\n\n{summary}"
        )

    def launch(self, argv: list[str], extra_env: dict[str, str], log_path: Path) -> Measurement:
        """Run one contender process from the repository root, measured, output to ``log_path``."""
        return run_measured(
            argv,
            env={**os.environ, **extra_env},
            cwd=ROOT,
            log_path=log_path,
            timeout=self.args.contender_timeout,
        )

    def earlier_run(self, name: str, bucket: str, folder: Path) -> None:
        """Run ``name`` unmeasured on one create window of other requests into ``bucket``."""
        settings = self.settings.replace(random_seed=(self.settings.random_seed or 0) + 1)
        prompts, bodies = write_prompt_file(
            folder / "prompts", settings.create_limit, self.args.image_size, first=10**6
        )
        # its own prompt file name: Dagster keeps a partition's requests under that name in S3
        prompts = prompts.rename(prompts.with_name("earlier.jsonl"))
        log = self.logs / f"{folder.parent.name}.earlier"
        with EmulatorProcess(settings, log_path=log.with_suffix(".emulator.log")) as emulator:
            config = self.config(emulator, bucket, prompts, bodies, folder / "result.json", name)
            argv, extra_env = self.contender_argv(name, config, folder)
            measured = self.launch(argv, extra_env, log.with_suffix(".log"))
        if measured.returncode != 0:
            raise RuntimeError(f"the earlier run of {name} failed; log {log.with_suffix('.log')}")
        # only the durations carry over: the measured run's counts and timeline see its own objects
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                if not item["Key"].endswith(DURATIONS_KEY):
                    self.s3.delete_object(Bucket=bucket, Key=item["Key"])

    def config(
        self,
        emulator: EmulatorProcess,
        bucket: str,
        prompts: Path,
        bodies: Path,
        result: Path,
        name: str,
        callback_url: str | None = None,
    ) -> ContenderConfig:
        """What contender ``name`` needs to run against ``emulator`` into ``bucket``."""
        settings = self.settings
        return ContenderConfig(
            base_url=emulator.base_url,
            upload_base_url=emulator.upload_base_url,
            api_key=emulator.api_key,
            bucket=bucket,
            prefix="kie/",
            prompts_path=str(prompts),
            bodies_path=str(bodies),
            result_path=str(result),
            create_limit=settings.create_limit,
            create_window=settings.create_window,
            queries_per_second=float(settings.query_limit) / settings.query_window,
            poll_seconds=self.poll_seconds(name),
            cap_seconds=self.args.naive_cap_seconds if name == "naive" else None,
            concurrency=self.args.async_concurrency,
            retry_sleep_seconds=self.args.async_retry_sleep,
            callback_url=callback_url,
        )

    def timeline(
        self,
        name: str,
        manifests: list[dict[str, Any]],
        folder: Path,
        spawned: float,
        ended: float,
    ) -> list[str]:
        notes = [
            timeline.manifest_timeline(
                manifests,
                spawned,
                ended,
                create_limit=self.settings.create_limit,
                create_window=self.settings.create_window,
            )
        ]
        if name == "dagster":
            notes.append(timeline.dagster_phases(folder / "dagster_home", spawned, ended))
        return [note for note in notes if note]

    def contender_argv(
        self, name: str, config: ContenderConfig, folder: Path
    ) -> tuple[list[str], dict[str, str]]:
        if name == "dagster":
            return contender_dagster.prepare(config, folder)
        path = config.write(folder / "config.json")
        return [sys.executable, "-m", MODULES[name], str(path)], {}

    def run(
        self, name: str, size: int, prompts: Path, bodies: Path, *, profile_to: Path | None = None
    ) -> Row:
        settings = self.settings
        tag = f"n{size}-{name}" + ("-profile" if profile_to else "")
        folder = self.workdir / tag
        folder.mkdir(parents=True)
        bucket = f"bench-{tag}"
        self.s3.create_bucket(Bucket=bucket)
        durations = emulator_durations(settings, size)
        limit = limit_seconds(durations, settings.create_limit, settings.create_window)
        s3_pid = getattr(self.s3_server, "pid", None)
        # what runs: "-warm" is the plain contender after an earlier run, "-callbacks" the plain
        # contender with a callback receiver
        program = name.removesuffix(WARM).removesuffix(CALLBACKS)
        callbacks = name.endswith(CALLBACKS)
        if name.endswith(WARM):
            self.earlier_run(program, bucket, folder / "earlier")
        if callbacks:
            settings = settings.replace(webhook_hmac_key=WEBHOOK_HMAC_KEY)
        with ExitStack() as running:
            emulator = running.enter_context(
                EmulatorProcess(settings, log_path=self.logs / f"{tag}.emulator.log")
            )
            emulator.admin.reset()
            receiver = (
                running.enter_context(
                    CallbackReceiverProcess(
                        bucket=bucket,
                        prefix="kie",
                        hmac_key=WEBHOOK_HMAC_KEY,
                        env=self.s3_server.env(),
                        log_path=self.logs / f"{tag}.receiver.log",
                    )
                )
                if callbacks
                else None
            )
            config = self.config(
                emulator,
                bucket,
                prompts,
                bodies,
                folder / "result.json",
                program,
                callback_url=receiver.url if receiver else None,
            )
            argv, extra_env = self.contender_argv(program, config, folder)
            if profile_to is not None:
                argv = profiling.py_spy_argv(profile_to, argv) or argv
            print(
                f"\n[{time.strftime('%H:%M:%S')}] N={size} {CONTENDERS[name]}: limit {limit:.1f} s",
                flush=True,
            )
            s3_cpu_before = _cpu(s3_pid)
            spawned = time.time()
            measured = self.launch(argv, extra_env, self.logs / f"{tag}.log")
            ended = time.time()
            stats = emulator.admin.stats()
            tasks = emulator.admin.tasks()
            # per-task polls, lags and times, for looking into a row afterwards
            (self.logs / f"{tag}.emulator.json").write_text(
                json.dumps({"stats": stats, "tasks": tasks})
            )
            emulator_cpu = _cpu(emulator.pid)
        s3_cpu = _cpu(s3_pid) - s3_cpu_before
        result_path = Path(config.result_path)
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        images = count_images(self.s3, bucket)
        # the batch engine and the assets leave a manifest per image, with its times
        manifests = (
            timeline.load_manifests(self.s3, bucket) if program in ("client", "dagster") else []
        )
        median, mean = polls_summary(stats)
        row = Row(
            size=size,
            contender=CONTENDERS[name],
            limit_s=limit,
            wall_s=measured.wall_seconds,
            completed=int(result.get("completed", images)),
            images_reported=int(result.get("images", images)),
            images_stored=images,
            tasks_created=int(stats.get("tasks_created", 0)),
            rate_limited=int(stats.get("rate_limited", {}).get("total", 0)),
            polls_median=median,
            polls_mean=mean,
            # with callbacks, polls are a fallback: their lags do not measure how soon a run knew
            added_latency=timeline.stored_latency(manifests)
            if callbacks
            else added_latency(stats, tasks),
            cpu_s=measured.cpu_seconds,
            peak_rss=measured.peak_rss_bytes,
            returncode=measured.returncode,
            extrapolated=bool(result.get("capped")),
            timed_out=measured.timed_out,
            emulator_cpu_s=emulator_cpu,
            s3_cpu_s=s3_cpu,
            peak_processes=measured.peak_processes,
            load_avg=os.getloadavg()[0],
            latency_floor=latency_floor(
                durations, settings.create_limit, config.queries_per_second
            ),
            callbacks=callbacks,
        )
        if measured.returncode != 0:
            row.notes.append(f"exit code {measured.returncode}; log {self.logs / (tag + '.log')}")
        if result.get("failed"):
            row.notes.append(f"{result['failed']} requests failed")
        if manifests:
            row.notes += self.timeline(program, manifests, folder, spawned, ended)
        print(table([row]), flush=True)
        return row


def run_all(args: argparse.Namespace, workdir: Path) -> tuple[list[Row], str, Bench]:
    with LocalS3Server(data_dir=workdir / "s3") as s3_server:
        os.environ.update(s3_server.env())
        bench = Bench(args, s3_server, workdir)
        profile = "Not run (`--no-profile`)."
        for size in args.size_list:
            prompts, bodies = write_prompt_file(workdir / f"prompts-n{size}", size, args.image_size)
            for name in args.contender_list:
                bench.rows.append(bench.run(name, size, prompts, bodies))
                (bench.logs / "rows.json").write_text(
                    json.dumps([asdict(r) for r in bench.rows], indent=2)
                )
        if args.profile:
            profile = "\n\n".join(
                bench.profile(name, max(args.size_list))
                for name in ("client", "dagster")
                if name in args.contender_list
            )
    return bench.rows, profile, bench


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kie-bench-") as folder:
        rows, profile, bench = run_all(args, Path(folder))
    print("\n" + table(rows))
    command = ("python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])).strip()
    settings = bench.settings
    document = results_document(
        rows,
        machine=machine.describe(),
        settings={
            "scale": f"{args.scale:g}× kie.ai's limits: {settings.create_limit} createTask per "
            f"{settings.create_window:g} s, {settings.query_limit} queries per "
            f"{settings.query_window:g} s",
            "task durations": f"{settings.task_duration_dist}, mean {settings.task_duration:g} s, "
            f"sigma/jitter {settings.task_jitter:g}, random_seed {settings.random_seed}",
            "requests": f"ideogram/v3-text-to-image, image_size {args.image_size}, 1 image each",
            "naive script": f"poll every {args.naive_poll_seconds:g} s, capped at "
            f"{args.naive_cap_seconds:g} s",
            "asyncio script": f"semaphore {args.async_concurrency}, poll every "
            f"{args.async_poll_seconds:g} s, {args.async_retry_sleep:g} s sleep after a 429",
            "dagster-kie": "client rate limiter set to the emulator's limits (Dagster: through "
            "`KIE_CREATE_TASKS_PER_WINDOW`, `KIE_CREATE_WINDOW_SECONDS`, `KIE_QUERIES_PER_SECOND`)",
            "isolation": "fresh emulator process and fresh S3 bucket per contender",
            "total benchmark time": f"{time.monotonic() - started:.0f} s",
        },
        command=command,
        profile=profile,
        notes=[f"N={r.size} {r.contender}: {n}" for r in rows for n in r.notes],
        server_rows=rows,
    )
    Path(args.output).write_text(document, encoding="utf-8")
    if args.profile:
        Path(args.output).with_name("profile.md").write_text(
            f"# Profiles (generated by `{command}`)\n\n{profile.strip()}\n", encoding="utf-8"
        )
    print(f"\nwrote {args.output}; logs in {bench.logs}")
    return 0 if all(r.returncode == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
