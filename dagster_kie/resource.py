"""``KieResource``: kie.ai as a Dagster resource.

Example:
    .. code-block:: python

        import dagster as dg
        from dagster_kie import KieResource

        @dg.asset
        def fox_image(context: dg.AssetExecutionContext, kie: KieResource) -> dg.MaterializeResult:
            with kie.get_client(context) as client:
                record = client.generate(
                    {"model": "ideogram/v3-text-to-image", "input": {"prompt": "a red fox"}}
                )
            return dg.MaterializeResult(metadata={"urls": record.result_urls})

        defs = dg.Definitions(
            assets=[fox_image],
            resources={"kie": KieResource(api_key=dg.EnvVar("KIE_API_KEY"))},
        )
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import dagster as dg
from dagster_shared.libraries import DagsterLibraryRegistry
from pydantic import Field

from dagster_kie import __version__
from dagster_kie.budget import CreditBudget
from dagster_kie.client import AsyncKieClient, KieClient
from dagster_kie.download import DownloadPolicy
from dagster_kie.polling import PollingPolicy
from dagster_kie.rate_limit import RateLimits
from dagster_kie.usage import UsageTracker

__all__ = ["KieResource"]

_SECRET_FIELDS = frozenset({"api_key"})


class KieResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """kie.ai's jobs, upload and credits APIs for Dagster assets.

    Hands out a sync :class:`~dagster_kie.client.KieClient` (``get_client``) or an async
    :class:`~dagster_kie.client.AsyncKieClient` (``get_async_client``), both context-managed and
    sharing this resource's rate limits, retries and polling settings. Given an asset context,
    what the calls cost (task ids, credits) is attached to the materialization as ``kie.*``
    metadata. The API key is never shown in the UI, logs, metadata or reprs.
    """

    api_key: str = Field(
        description="kie.ai API key. Set it with dg.EnvVar('KIE_API_KEY'), never as a literal."
    )
    base_url: str = Field(default="https://api.kie.ai", description="Jobs API base URL.")
    upload_base_url: str = Field(
        default="https://kieai.redpandaai.co", description="File-upload API base URL."
    )
    callback_url: str | None = Field(
        default=None,
        description="Public URL of the dagster-kie callback receiver; unset means poll.",
    )
    request_timeout_seconds: float = Field(default=30.0, description="Timeout of one HTTP call.")
    max_retries: int = Field(
        default=5, description="Retries of a call that is safe to repeat (429, 455, 500, network)."
    )
    wait_timeout_seconds: float = Field(
        default=900.0, description="How long to wait for one task before giving up for this run."
    )
    create_tasks_per_window: int = Field(
        default=20, description="createTask calls allowed per window (kie.ai: 20 per 10 s)."
    )
    create_window_seconds: float = Field(default=10.0, description="Length of that window.")
    queries_per_second: float = Field(
        default=10.0, description="Task/credit queries allowed per second (kie.ai: 10)."
    )
    allow_private_downloads: bool = Field(
        default=False,
        description="Allow result downloads from loopback/private addresses (local emulator only).",
    )
    credit_budget_per_run: float | None = Field(
        default=None,
        description="Most credits one run may spend; when the next submission would cross it, "
        "the run stops submitting, finishes what is in flight and fails naming the budget. "
        "Unset: no limit.",
    )
    credit_budget_per_day: float | None = Field(
        default=None,
        description="Most credits all runs together may spend in one UTC day (shared through "
        "S3 under {prefix}/_spend/). Unset: no limit.",
    )
    credits_per_image: float = Field(
        default=1.6,
        description="Expected credits of one image, used to reserve budget before a task has "
        "reported its real cost (the guard learns the real cost from finished tasks).",
    )

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, ("**********" if name in _SECRET_FIELDS and value else value)

    def _client_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "upload_base_url": self.upload_base_url,
            "timeout": self.request_timeout_seconds,
            "max_retries": self.max_retries,
            "rate_limits": RateLimits(
                create_per_window=self.create_tasks_per_window,
                create_window_s=self.create_window_seconds,
                queries_per_second=self.queries_per_second,
            ),
            "polling": PollingPolicy(deadline_s=self.wait_timeout_seconds),
            "download_policy": DownloadPolicy(allow_private_addresses=self.allow_private_downloads),
        }

    def credit_budget(self) -> CreditBudget:
        """The credit limits this resource sets (``enabled`` is False when none is set)."""
        return CreditBudget(
            per_run=self.credit_budget_per_run,
            per_day=self.credit_budget_per_day,
            credits_per_image=self.credits_per_image,
        )

    def build_client(self) -> KieClient:
        """A new sync client with this resource's settings (close it yourself)."""
        return KieClient(self.api_key, **self._client_options())

    def build_async_client(self) -> AsyncKieClient:
        """A new async client with this resource's settings (close it yourself)."""
        return AsyncKieClient(self.api_key, **self._client_options())

    @contextmanager
    def get_client(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext | None = None
    ) -> Iterator[KieClient]:
        """A sync client for the duration of a ``with`` block.

        Args:
            context: When given, the tasks created and credits spent inside the block are
                added to the asset's materialization metadata (``kie.tasks``, ``kie.credits``).
        """
        tracker = UsageTracker()
        with KieClient(self.api_key, **self._client_options(), on_event=tracker) as client:
            yield client
        _attach_usage(context, tracker)

    @asynccontextmanager
    async def get_async_client(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext | None = None
    ) -> AsyncIterator[AsyncKieClient]:
        """An async client for the duration of an ``async with`` block (see :meth:`get_client`)."""
        tracker = UsageTracker()
        async with AsyncKieClient(
            self.api_key, **self._client_options(), on_event=tracker
        ) as client:
            yield client
        _attach_usage(context, tracker)


def _attach_usage(
    context: dg.AssetExecutionContext | dg.OpExecutionContext | None, tracker: UsageTracker
) -> None:
    if context is None or not tracker.has_usage:
        return
    op_context = (
        context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context
    )
    if len(op_context.selected_output_names) == 1:
        op_context.add_output_metadata(tracker.metadata())
    else:
        op_context.log.info(f"kie.ai usage: {tracker.summary()}")


DagsterLibraryRegistry.register("dagster-kie", __version__, is_dagster_package=False)
