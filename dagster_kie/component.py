"""``KieImageGeneration``: the generation asset graph as a Dagster component.

A ``dg`` project declares the whole graph (assets, checks, job, prompt and retry sensors,
optional batch schedule, and the ``kie`` and ``s3`` resources) in a ``defs.yaml``:

.. code-block:: yaml

    type: dagster_kie.component.KieImageGeneration
    attributes:
      model: ideogram/v3-text-to-image
      defaults: {image_size: square_hd, rendering_speed: TURBO}
      prompts_dir: "{{ env('KIE_PROMPTS_DIR', 'prompts') }}"
      bucket: "{{ env('KIE_S3_BUCKET', 'kie-demo') }}"
      prefix: kie
      schedule_cron: "0 6 * * *"

``dg scaffold defs dagster_kie.component.KieImageGeneration my_images`` writes such a file (and an
example prompt file) for you.

``model`` and ``defaults`` become a :class:`~dagster_kie.prompts.RecordDefaults`, applied by
the prompt parser to every record.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import dagster as dg
from dagster.components.component_scaffolding import scaffold_component
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from dagster_kie.models import CHARACTER, MODELS, REFRAME, TEXT_TO_IMAGE
from dagster_kie.prompts import RecordDefaults
from dagster_kie.sources import LocalPromptSource, PromptSource, S3PromptSource

__all__ = [
    "KieImageGeneration",
    "KieImageGenerationScaffoldParams",
    "KieImageGenerationScaffolder",
    "KieModel",
    "S3Prompts",
]

KieModel = Literal["ideogram/v3-text-to-image", "ideogram/v3-reframe", "ideogram/character"]
"""The models a component (and its records) may name."""
_DEFAULT_MODEL: KieModel = "ideogram/v3-text-to-image"

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


@functools.cache
def _shared_s3_resource(endpoint_url: str | None, region_name: str | None) -> Any:
    """One ``S3Resource`` per configuration: components sharing it merge into one project."""
    from dagster_aws.s3 import S3Resource

    return S3Resource(endpoint_url=endpoint_url, region_name=region_name)


@functools.cache
def _shared_kie_resource(
    api_key_env: str,
    base_url: str | None,
    upload_base_url: str | None,
    callback_url: str | None,
    allow_private_downloads: bool,
) -> Any:
    """One ``KieResource`` per configuration (Dagster merges resources by identity)."""
    from dagster_kie.resource import KieResource

    urls = {"base_url": base_url, "upload_base_url": upload_base_url, "callback_url": callback_url}
    options: dict[str, Any] = {key: url for key, url in urls.items() if url}
    return KieResource(
        api_key=dg.EnvVar(api_key_env), allow_private_downloads=allow_private_downloads, **options
    )


class S3Prompts(dg.Resolvable, dg.Model):
    """Prompt files under an S3 prefix (read with the component's ``s3`` resource)."""

    bucket: str = Field(description="Bucket holding the prompt files.")
    prefix: str = Field(default="prompts/", description="Prefix the prompt files sit under.")


def _name_part(key_prefix: list[str]) -> str:
    base = "_".join(key_prefix) or "kie"
    return re.sub(r"[^A-Za-z0-9_]", "_", base)


class KieImageGenerationScaffoldParams(BaseModel):
    """Options of ``dg scaffold defs dagster_kie.component.KieImageGeneration <path>``."""

    model: KieModel = Field(
        default=_DEFAULT_MODEL, description="Default model written into defs.yaml."
    )
    prompts_s3_bucket: str | None = Field(
        default=None,
        description="Watch this bucket's prompts/ prefix instead of a local prompts folder.",
    )


_EXAMPLE_RECORDS: dict[str, list[dict[str, Any]]] = {
    TEXT_TO_IMAGE: [
        {"id": "example-fox", "prompt": "a red fox in fresh snow, golden hour"},
        {"prompt": "a lighthouse on a cliff, watercolor", "image_size": "landscape_16_9"},
    ],
    REFRAME: [{"id": "example-reframe", "image_url": "https://example.com/photo.png"}],
    CHARACTER: [
        {
            "id": "example-character",
            "prompt": "the same person reading in a cafe",
            "reference_image_urls": ["https://example.com/person.png"],
        }
    ],
}


def _defs_yaml(type_name: str, params: KieImageGenerationScaffoldParams) -> str:
    if params.prompts_s3_bucket:
        source = (
            "  # Prompt files under an S3 prefix (read with the s3 resource below).\n"
            "  prompts_s3:\n"
            f"    bucket: {json.dumps(params.prompts_s3_bucket)}\n"
            "    prefix: prompts/\n"
        )
    else:
        source = (
            "  # Folder of prompt files (*.jsonl, *.json, *.txt); relative to this file's folder.\n"
            "  # Every file in it is generated (and paid for) once the prompt sensor runs.\n"
            "  prompts_dir: \"{{ env('KIE_PROMPTS_DIR', 'prompts') }}\"\n"
        )
    return (
        f"type: {type_name}\n"
        "\n"
        "attributes:\n"
        "  # Model of records that do not name one: " + ", ".join(MODELS) + "\n"
        f"  model: {params.model}\n"
        "  # Input fields applied to every record that does not set them.\n"
        "  defaults:\n"
        "    image_size: square_hd\n"
        "    rendering_speed: TURBO\n"
        + source
        + "  # Where images, manifests and the task ledger go.\n"
        "  bucket: \"{{ env('KIE_S3_BUCKET', 'kie-demo') }}\"\n"
        "  prefix: \"{{ env('KIE_S3_PREFIX', 'kie') }}\"\n"
        "  # Daily sweep over all prompt files (re-runs only generate what is missing).\n"
        "  # Remove it for no schedule.\n"
        '  schedule_cron: "0 6 * * *"\n'
        "  pool: kie\n"
        "  asset_key_prefix: [kie]\n"
        "  # The kie.ai key is read from this variable at run time, never stored here.\n"
        "  api_key_env: KIE_API_KEY\n"
        "  base_url: \"{{ env('KIE_BASE_URL', 'https://api.kie.ai') }}\"\n"
        "\n"
        "requirements:\n"
        "  env:\n"
        "    - KIE_API_KEY\n"
        "    - KIE_PROMPTS_DIR\n"
        "    - KIE_S3_BUCKET\n"
        "    - KIE_S3_PREFIX\n"
        "    - KIE_BASE_URL\n"
    )


class KieImageGenerationScaffolder(dg.Scaffolder[KieImageGenerationScaffoldParams]):
    """Writes a filled-in ``defs.yaml`` and, for a local folder, an example prompt file."""

    @classmethod
    def get_scaffold_params(cls) -> type[KieImageGenerationScaffoldParams]:
        """The options ``dg scaffold defs`` accepts for this component."""
        return KieImageGenerationScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[KieImageGenerationScaffoldParams]) -> None:
        """Write ``defs.yaml`` (or ``component.py``) and ``prompts/example.jsonl``.

        Args:
            request: What ``dg`` asks for: the target folder, the format and the params.
        """
        params = request.params or KieImageGenerationScaffoldParams()
        if request.scaffold_format != "yaml" or request.append:
            attributes: dict[str, Any] = {
                "model": params.model,
                "prompts_dir": "prompts",
                "bucket": "{{ env('KIE_S3_BUCKET', 'kie-demo') }}",
            }
            scaffold_component(request, attributes)
            return
        target = request.target_path
        target.mkdir(parents=True, exist_ok=True)
        (target / "defs.yaml").write_text(_defs_yaml(request.type_name, params), encoding="utf-8")
        if params.prompts_s3_bucket:
            return
        prompts = target / "prompts"
        prompts.mkdir(exist_ok=True)
        example = prompts / "example.jsonl"
        if not example.exists():
            example.write_text(
                "".join(json.dumps(record) + "\n" for record in _EXAMPLE_RECORDS[params.model]),
                encoding="utf-8",
            )


@dg.scaffold_with(KieImageGenerationScaffolder)
class KieImageGeneration(dg.Component, dg.Resolvable, dg.Model):
    """kie.ai image generation: prompt files → validated requests → tasks → images in S3.

    Builds the asset graph of :func:`~dagster_kie.assets.build_kie_assets` (requests, tasks and
    images assets with their image checks, one dynamic partition per prompt file), the job that
    materializes one file, a sensor that picks up new and changed prompt files, a sensor that
    retries runs that failed for a passing reason, an optional batch schedule, and the ``kie``
    (:class:`~dagster_kie.resource.KieResource`, key from ``api_key_env``) and ``s3``
    (``dagster_aws.s3.S3Resource``, configured by the standard AWS environment) resources.
    Job, sensor, schedule and partition names start with the asset key prefix joined by ``_``.
    """

    default_model: KieModel = Field(
        default=_DEFAULT_MODEL,
        alias="model",
        description="Model of records that do not name one (shorthand records, text lines).",
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="Input fields merged into every record's input; the record's own values win.",
    )
    prompts_dir: str | None = Field(
        default=None,
        description="Folder of prompt files; a relative path is relative to the defs.yaml folder.",
    )
    prompts_s3: S3Prompts | None = Field(
        default=None, description="Or: an S3 prefix of prompt files."
    )
    bucket: str = Field(description="S3 bucket for images, manifests and the task ledger.")
    prefix: str = Field(default="kie", description="Key prefix inside the bucket.")
    schedule_cron: str | None = Field(
        default=None, description="Cron of the batch schedule over all files; none when unset."
    )
    schedule_timezone: str = Field(default="UTC", description="Timezone of schedule_cron.")
    pool: str | None = Field(
        default="kie", description="Dagster concurrency pool bounding kie.ai use across runs."
    )
    asset_key_prefix: list[str] = Field(
        default_factory=lambda: ["kie"], description="Asset key prefix."
    )
    group_name: str | None = Field(
        default=None, description="Asset group; the key prefix joined by '_' when unset."
    )
    api_key_env: str = Field(
        default="KIE_API_KEY",
        pattern=_IDENTIFIER,
        description="Environment variable holding the kie.ai API key (read at run time).",
    )
    base_url: str | None = Field(default=None, description="Jobs API base URL.")
    upload_base_url: str | None = Field(default=None, description="File-upload API base URL.")
    callback_url: str | None = Field(
        default=None, description="Public URL of the callback receiver; unset means poll."
    )
    allow_private_downloads: bool | None = Field(
        default=None,
        description="Allow result downloads from private addresses; by default only when "
        "base_url is a loopback address (the local emulator).",
    )
    kie_resource_key: str = Field(
        default="kie",
        pattern=_IDENTIFIER,
        description="Resource key of the KieResource (another component with other settings "
        "needs another key).",
    )
    s3_resource_key: str = Field(
        default="s3", pattern=_IDENTIFIER, description="Resource key of the S3Resource."
    )
    sensors_running: bool = Field(
        default=False, description="Start the sensors and the schedule as soon as they load."
    )
    prompt_sensor_interval_seconds: int = Field(
        default=30, ge=1, description="Seconds between prompt-sensor ticks."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Attempts per partition, counting the first run."
    )

    @classmethod
    def get_spec(cls) -> dg.ComponentTypeSpec:
        """What the component makes, for ``dg`` and the UI."""
        return dg.ComponentTypeSpec(
            description="kie.ai Ideogram image generation from prompt files into S3.",
            tags=["kie", "image-generation", "s3"],
            produces=["asset", "asset_check", "job", "sensor", "schedule", "resource"],
        )

    @field_validator("defaults")
    @classmethod
    def _check_defaults(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "default_model" in info.data:  # else the model is invalid: that error is reported
            RecordDefaults(info.data["default_model"], value)
        return value

    @model_validator(mode="after")
    def _check_source(self) -> KieImageGeneration:
        if (self.prompts_dir is None) == (self.prompts_s3 is None):
            raise ValueError("set exactly one of prompts_dir and prompts_s3")
        if not self.asset_key_prefix:
            raise ValueError("asset_key_prefix must have at least one part")
        return self

    def _s3_resource(self) -> Any:
        return _shared_s3_resource(
            os.environ.get("AWS_ENDPOINT_URL") or None, os.environ.get("AWS_REGION") or None
        )

    def _kie_resource(self) -> Any:
        allow_private = self.allow_private_downloads
        if allow_private is None:
            allow_private = urlparse(self.base_url or "").hostname in _LOOPBACK_HOSTS
        return _shared_kie_resource(
            self.api_key_env, self.base_url, self.upload_base_url, self.callback_url, allow_private
        )

    @property
    def record_defaults(self) -> RecordDefaults:
        """``model`` and ``defaults``, as the prompt parser applies them to every record."""
        return RecordDefaults(self.default_model, self.defaults)

    def prompt_source(self, base_dir: Path | str, s3: Any = None) -> PromptSource:
        """The source the sensor watches and the assets read.

        Args:
            base_dir: The folder a relative ``prompts_dir`` is relative to (the component's
                folder when loaded from ``defs.yaml``).
            s3: The ``S3Resource`` reading an S3 prefix of prompt files; one configured from
                the environment when omitted.

        Returns:
            The prompt source.
        """
        if self.prompts_s3 is not None:
            s3 = s3 if s3 is not None else self._s3_resource()
            return S3PromptSource(s3.get_client, self.prompts_s3.bucket, self.prompts_s3.prefix)
        folder = Path(str(self.prompts_dir))
        return LocalPromptSource(str(folder if folder.is_absolute() else Path(base_dir) / folder))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """Build the assets, checks, job, sensors, schedule and resources.

        Args:
            context: The component's load context.

        Returns:
            The definitions.
        """
        from dagster_kie.assets import build_kie_assets
        from dagster_kie.schedules import build_batch_schedule
        from dagster_kie.sensors import build_prompt_sensor, build_retry_sensor

        base = _name_part(self.asset_key_prefix)
        s3 = self._s3_resource()
        source = self.prompt_source(context.path, s3)
        record_defaults = self.record_defaults
        kie_assets = build_kie_assets(
            source=source,
            bucket=self.bucket,
            prefix=self.prefix.strip("/") or "kie",
            key_prefix=tuple(self.asset_key_prefix),
            partitions_def=dg.DynamicPartitionsDefinition(name=f"{base}_prompt_files"),
            group_name=self.group_name or base,
            pool=self.pool,
            job_name=f"{base}_generate_images",
            kie_resource_key=self.kie_resource_key,
            s3_resource_key=self.s3_resource_key,
            record_defaults=record_defaults,
        )
        status = "RUNNING" if self.sensors_running else "STOPPED"
        sensors = [
            build_prompt_sensor(
                job=kie_assets.job,
                partitions_def=kie_assets.partitions_def,
                source=source,
                name=f"{base}_prompt_sensor",
                minimum_interval_seconds=self.prompt_sensor_interval_seconds,
                default_status=dg.DefaultSensorStatus(status),
                record_defaults=record_defaults,
            ),
            build_retry_sensor(
                job=kie_assets.job,
                name=f"{base}_retry_sensor",
                max_attempts=self.max_attempts,
                default_status=dg.DefaultSensorStatus(status),
            ),
        ]
        schedules = []
        if self.schedule_cron:
            schedules.append(
                build_batch_schedule(
                    job=kie_assets.job,
                    partitions_def=kie_assets.partitions_def,
                    cron_schedule=self.schedule_cron,
                    name=f"{base}_batch_schedule",
                    execution_timezone=self.schedule_timezone,
                    default_status=dg.DefaultScheduleStatus(status),
                )
            )
        return dg.Definitions(
            assets=kie_assets.assets,
            jobs=[kie_assets.job],
            sensors=sensors,
            schedules=schedules,
            resources={self.kie_resource_key: self._kie_resource(), self.s3_resource_key: s3},
        )
