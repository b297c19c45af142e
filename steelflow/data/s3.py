"""``data.source: s3://bucket/prefix``: ingest straight from a bucket (AWS, MinIO, SeaweedFS, ...).

Credentials and endpoint come from the environment only, as boto3 reads them: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for S3-compatible servers.
Downloads are retried by boto3 (standard mode, ``data.s3_retries`` attempts) and then fail with an error
naming the endpoint. The objects keep their layout under the prefix, so the same layout detection as for a
local folder applies afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from steelflow.errors import DataError
from steelflow.progress import track

SCHEME = "s3://"


def is_s3(source: str) -> bool:
    return source.startswith(SCHEME)


def endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


def download(source: str, dest: Path, attempts: int) -> int:
    """Copy every object under ``s3://bucket/prefix`` to ``dest`` (same relative keys); returns the count."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    url = urlparse(source)
    bucket, prefix = url.netloc, url.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client = boto3.client("s3", config=Config(retries={"max_attempts": attempts, "mode": "standard"}))
    try:
        keys = [
            obj["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if not obj["Key"].endswith("/")
        ]
        if not keys:
            raise DataError(f"{source}: no objects under this prefix (endpoint {endpoint()})")
        for key in track(keys, f"download {source}"):
            target = dest / key[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(target))
    except (BotoCoreError, ClientError) as e:
        raise DataError(f"{source}: S3 at {endpoint()} failed after {attempts} attempts: {e}") from None
    return len(keys)
