"""``data.source: s3://bucket/prefix``: ingest straight from a bucket (AWS, MinIO, SeaweedFS, ...).

Credentials and endpoint come from the environment only, as boto3 reads them: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for S3-compatible servers.
Downloads are retried by boto3 (standard mode, ``data.s3_retries`` attempts) and then fail with an error
naming the endpoint. The objects keep their layout under the prefix, so the same layout detection as for a
local folder applies afterwards. A key that would land outside the download folder (``prefix/../../x``,
``prefix//etc/x``) is never downloaded: refused, or left out and returned (``data.outside_links: skip``).
:func:`upload` is the way back (a TrainJob's inputs and outputs, :mod:`steelflow.trainjob`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from steelflow.errors import DataError
from steelflow.progress import track

SCHEME = "s3://"


def is_s3(source: str) -> bool:
    return source.startswith(SCHEME)


def endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


def download(source: str, dest: Path, attempts: int, outside_links: str = "refuse") -> list[str]:
    """Copy every object under ``s3://bucket/prefix`` to ``dest`` (same relative keys); returns the keys
    left out because they would land outside ``dest`` (``outside_links: skip``; ``refuse``: a DataError)."""
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
        targets = {key: local_path(dest, key[len(prefix) :]) for key in keys}
        outside = [key for key, target in targets.items() if target is None]
        if outside and outside_links == "refuse":
            raise DataError(
                f"{source}: {len(outside)} object key(s) would land outside the download folder: "
                f"{', '.join(outside[:5])}{', …' if len(outside) > 5 else ''}; nothing is written outside it "
                "(data.outside_links: skip leaves such objects out with a warning)"
            )
        for key in track([k for k in keys if targets[k] is not None], f"download {source}"):
            target = targets[key]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(target))
    except (BotoCoreError, ClientError) as e:
        raise DataError(f"{source}: S3 at {endpoint()} failed after {attempts} attempts: {e}") from None
    return outside


def get(url: str, dest: Path, attempts: int) -> Path:
    """Download the one object ``s3://bucket/key`` to ``dest``; a DataError names it when it is not there."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(url)
    client = boto3.client("s3", config=Config(retries={"max_attempts": attempts, "mode": "standard"}))
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        client.download_file(parsed.netloc, parsed.path.lstrip("/"), str(dest))
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise DataError(f"{url}: no such object (endpoint {endpoint()})") from None
        raise DataError(f"{url}: S3 at {endpoint()} failed after {attempts} attempts: {e}") from None
    except BotoCoreError as e:
        raise DataError(f"{url}: S3 at {endpoint()} failed after {attempts} attempts: {e}") from None
    return dest


def local_path(dest: Path, relative_key: str) -> Path | None:
    """Where an object of key ``relative_key`` (below the prefix) goes under ``dest``; None when it would
    land outside ``dest`` (``..`` segments, an absolute key) or on ``dest`` itself."""
    root = Path(os.path.abspath(dest))
    target = Path(os.path.normpath(os.path.join(root, relative_key)))  # an absolute key replaces root
    if target == root or not target.is_relative_to(root):
        return None
    return target


def upload(src: Path, files: Iterable[str | Path], dest: str, attempts: int) -> list[str]:
    """Copy ``files`` (paths relative to ``src``; a folder: every file under it) to ``s3://bucket/prefix``,
    keeping their relative paths as keys below the prefix; returns the keys written."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    url = urlparse(dest)
    bucket, prefix = url.netloc, url.path.strip("/")
    found = []
    for rel in files:
        path = src / rel
        found += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    client = boto3.client("s3", config=Config(retries={"max_attempts": attempts, "mode": "standard"}))
    keys = []
    try:
        for path in track(found, f"upload {dest}"):
            key = "/".join(filter(None, (prefix, path.relative_to(src).as_posix())))
            client.upload_file(str(path), bucket, key)
            keys.append(key)
    except (BotoCoreError, ClientError) as e:
        raise DataError(f"{dest}: S3 at {endpoint()} failed after {attempts} attempts: {e}") from None
    return keys
