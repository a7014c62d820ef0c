"""CallbackInbox on moto: keys, put/get, and the batch view (one LIST for many waiters)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from dagster_kie.callbacks import CallbackInbox, InvalidTaskId, validate_task_id

from .helpers import callback_body


def count_lists(client: Any) -> list[int]:
    """A one-element list counting ListObjectsV2 calls made with ``client``."""
    counter = [0]

    def hook(**_: Any) -> None:
        counter[0] += 1

    client.meta.events.register("before-call.s3.ListObjectsV2", hook)
    return counter


def count_gets(client: Any) -> list[int]:
    counter = [0]

    def hook(**_: Any) -> None:
        counter[0] += 1

    client.meta.events.register("before-call.s3.GetObject", hook)
    return counter


@pytest.mark.parametrize(
    "task_id",
    ["task_ideogram_1765180586443", "0123456789abcdef0123456789abcdef", "a", "a.b-c_d", "x" * 128],
)
def test_valid_task_ids(task_id: str) -> None:
    assert validate_task_id(task_id) == task_id


@pytest.mark.parametrize(
    "task_id",
    ["", "../x", "a/b", "..", ".", "a b", "a\nb", "x" * 129, "é", "a%2Fb", "a\\b", None, 12],
)
def test_invalid_task_ids(task_id: Any) -> None:
    with pytest.raises(InvalidTaskId):
        validate_task_id(task_id)
    inbox = CallbackInbox(object(), "b")  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskId):
        inbox.key_for(task_id)


def test_key_layout() -> None:
    client: Any = object()
    assert CallbackInbox(client, "b").key_for("t1") == "kie/_callbacks/t1.json"
    assert CallbackInbox(client, "b", "a/b/").key_for("t1") == "a/b/_callbacks/t1.json"
    assert CallbackInbox(client, "b", "").key_for("t1") == "_callbacks/t1.json"


def test_put_get_round_trip(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    inbox = CallbackInbox(client, bucket)
    assert inbox.get("task_1") is None
    assert inbox.get_payload("task_1") is None
    payload = callback_body("task_1")
    key = inbox.put("task_1", payload)
    assert key == "kie/_callbacks/task_1.json"
    stored = client.get_object(Bucket=bucket, Key=key)
    assert stored["ContentType"] == "application/json"
    assert json.loads(stored["Body"].read()) == payload
    record = inbox.get("task_1")
    assert record is not None
    assert record.task_id == "task_1" and record.succeeded
    assert record.result_urls == ["https://files.example/task_1/0.png"]
    assert record.credits_consumed == 3.5
    assert inbox.get_payload("task_1") == payload


def test_get_reads_task_id_spelling(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    inbox = CallbackInbox(client, bucket)
    body = callback_body("task_2", state="fail")
    body["data"]["task_id"] = body["data"].pop("taskId")
    inbox.put("task_2", body)
    record = inbox.get("task_2")
    assert record is not None and record.task_id == "task_2"
    assert record.state == "fail" and record.fail_msg == "internal error"


def test_delete(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    inbox = CallbackInbox(client, bucket)
    inbox.put("t1", callback_body("t1"))
    assert inbox.arrived("t1")
    inbox.delete("t1")
    assert not inbox.arrived("t1")
    assert inbox.get("t1") is None


def test_refresh_lists_every_page(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    writer = CallbackInbox(client, bucket)
    for i in range(7):
        writer.put(f"t{i}", callback_body(f"t{i}"))
    # Noise that is not a callback: other folders, nested keys, other suffixes.
    client.put_object(Bucket=bucket, Key="kie/_callbacks/nested/t9.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key="kie/_callbacks/t8.tmp", Body=b"{}")
    client.put_object(Bucket=bucket, Key="kie/images/t7.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key="other/_callbacks/t6.json", Body=b"{}")
    lists = count_lists(client)
    reader = CallbackInbox(client, bucket, page_size=2)
    assert not reader.arrived("t0")
    arrived = reader.refresh()
    assert arrived == {f"t{i}" for i in range(7)}
    assert lists[0] == reader.list_calls == 5  # 9 keys under the folder, 2 a page
    assert reader.arrived("t6") and not reader.arrived("t7") and not reader.arrived("t9")


def test_refresh_keeps_own_puts_made_meanwhile(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    inbox = CallbackInbox(client, bucket)
    inbox.refresh()
    inbox.put("late", callback_body("late"))
    assert inbox.arrived("late")
    assert "late" in inbox.refresh()


async def test_aget_returns_none_until_arrived(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    writer = CallbackInbox(client, bucket)
    reader = CallbackInbox(client, bucket, min_refresh_interval_s=0.0)
    assert await reader.aget("t1") is None
    writer.put("t1", callback_body("t1"))
    record = await reader.aget("t1")
    assert record is not None and record.result_urls


async def test_aget_rejects_bad_ids(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    with pytest.raises(InvalidTaskId):
        await CallbackInbox(client, bucket).aget("../x")


async def test_many_waiters_share_one_list(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    writer = CallbackInbox(client, bucket)
    ids = [f"task_{i:04d}" for i in range(1000)]
    for task_id in ids[:10]:
        writer.put(task_id, callback_body(task_id))
    reader = CallbackInbox(client, bucket, min_refresh_interval_s=60)
    lists, gets = count_lists(client), count_gets(client)
    records = await asyncio.gather(*(reader.aget(task_id) for task_id in ids))
    assert lists[0] == 1
    assert gets[0] == 10  # only the arrived ones
    assert [r.task_id for r in records if r is not None] == ids[:10]
    # Within the interval no further LIST: a new arrival is not seen yet.
    writer.put(ids[10], callback_body(ids[10]))
    assert await reader.aget(ids[10]) is None
    assert lists[0] == 1


async def test_refresh_interval_is_respected(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    # seconds, not tenths: five reads on a loaded CI worker once took longer than 0.2 s
    reader = CallbackInbox(client, bucket, min_refresh_interval_s=2.0)
    lists = count_lists(client)
    for _ in range(5):
        await reader.aget("t1")
    assert lists[0] == 1
    await asyncio.sleep(2.05)
    CallbackInbox(client, bucket).put("t1", callback_body("t1"))
    assert await reader.aget("t1") is not None
    assert lists[0] == 2


async def test_aget_next_waits_for_the_next_shared_list(moto_s3: tuple[Any, str]) -> None:
    """A waiter not answered by the last LIST is answered by the next one, which all waiters
    share and which starts no sooner than the interval allows."""
    client, bucket = moto_s3
    writer = CallbackInbox(client, bucket)
    reader = CallbackInbox(client, bucket, min_refresh_interval_s=0.5)
    listed_at: list[float] = []
    client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **_: listed_at.append(time.monotonic())
    )
    first_look = time.monotonic()
    assert await reader.aget_next("t1") is None  # the first LIST, at once
    assert len(listed_at) == 1
    writer.put("t1", callback_body("t1"))
    records = await asyncio.gather(*(reader.aget_next(t) for t in ("t1", "t1", "t2")))
    assert [r is not None for r in records] == [True, True, False]
    assert len(listed_at) == 2  # one more LIST for the three waiters, after the interval
    assert listed_at[1] >= first_look + 0.5
    # Arrived tasks answer at once from the last LIST.
    assert await reader.aget_next("t1") is not None
    assert len(listed_at) == 2


async def test_aget_uses_a_given_executor(moto_s3: tuple[Any, str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client, bucket = moto_s3
    CallbackInbox(client, bucket).put("t1", callback_body("t1"))
    with ThreadPoolExecutor(2, thread_name_prefix="inbox-test") as pool:
        names: list[str] = []
        reader = CallbackInbox(client, bucket, executor=pool)
        original = reader.refresh

        def spy() -> frozenset[str]:
            import threading

            names.append(threading.current_thread().name)
            return original()

        reader.refresh = spy  # type: ignore[method-assign]
        assert await reader.aget("t1") is not None
    assert names and names[0].startswith("inbox-test")


async def test_a_cancelled_waiter_does_not_break_the_others(moto_s3: tuple[Any, str]) -> None:
    import threading

    client, bucket = moto_s3
    CallbackInbox(client, bucket).put("t1", callback_body("t1"))
    reader = CallbackInbox(client, bucket)
    gate = threading.Event()
    original = reader.refresh

    def slow() -> frozenset[str]:
        gate.wait(5)
        return original()

    reader.refresh = slow  # type: ignore[method-assign]
    first = asyncio.ensure_future(reader.aget("t1"))
    second = asyncio.ensure_future(reader.aget("t1"))
    await asyncio.sleep(0.05)
    first.cancel()
    gate.set()
    record = await second
    assert record is not None
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_list_errors_reach_the_waiters_then_clear(moto_s3: tuple[Any, str]) -> None:
    client, bucket = moto_s3
    reader = CallbackInbox(client, "no-such-bucket", min_refresh_interval_s=0.0)
    results = await asyncio.gather(reader.aget("t1"), reader.aget("t2"), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    reader.bucket = bucket
    assert await reader.aget("t1") is None  # a later call lists again
