"""A boto3 S3 client from the standard ``AWS_*`` environment (any S3-compatible endpoint)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["s3_client_from_env"]


def s3_client_from_env(env: Mapping[str, str] | None = None) -> S3Client:
    """An S3 client configured by ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``),
    ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``) and boto3's usual credential chain.

    A custom endpoint gets path-style addressing (what local S3 servers expect).
    """
    import boto3
    from botocore.config import Config

    env = os.environ if env is None else env
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    if endpoint and not region:
        region = "us-east-1"
    path_style = bool(endpoint) and "amazonaws.com" not in str(endpoint)
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path" if path_style else "auto"},
        connect_timeout=10,
        read_timeout=30,
    )
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config)
