"""``steelflow shards``: the cache's shard sets (:mod:`steelflow.data.shards`): describe, verify, push to S3.

``push`` copies ``data/cache/splits`` and ``data/cache/corrupted`` to ``s3://bucket/prefix/{splits,corrupted}``
with their layout; training then streams from there with ``train.loader.shards: s3://bucket/prefix/splits``
(a TrainJob's pods, or any machine that shares no disk with the one that split).
"""

from __future__ import annotations

from typing import Annotated

import typer

from steelflow import config, paths
from steelflow.console import ParamsOpt, SetOpt, out
from steelflow.console import guard as _step
from steelflow.console import load as _params
from steelflow.data import s3
from steelflow.data.shards import ShardSet
from steelflow.errors import DataError

shards_app = typer.Typer(help="The cache's shard sets: show, verify, push to S3.", no_args_is_help=True)
CACHED = ("splits", "corrupted")


@shards_app.command("show")
@_step
def shards_show(
    path: Annotated[str, typer.Argument(help="a shard set: a folder, or s3://bucket/prefix/<set>")],
) -> None:
    """Images, classes and shards of one set, from its index."""
    s = ShardSet(path)
    index = s.index
    size = sum(sh["bytes"] for sh in index["shards"])
    shape = "×".join(map(str, s.image_shape or ()))
    out.print(f"{s.location}: {len(s)} images ({shape}) in {len(s.counts)} shards, {size:,} bytes")
    for name, count in index["counts"].items():
        out.print(f"  {name}: {count}")


@shards_app.command("verify")
@_step
def shards_verify(
    path: Annotated[str, typer.Argument(help="a shard set: a folder, or s3://bucket/prefix/<set>")],
) -> None:
    """Check every shard against the sha256 its index holds; names the first that differs."""
    s = ShardSet(path)
    s.verify()
    out.print(f"{s.location}: {len(s.counts)} shards match their index")


@shards_app.command("push")
@_step
def shards_push(
    dest: Annotated[str, typer.Argument(help="s3://bucket/prefix: splits/ and corrupted/ go below it")],
    params: ParamsOpt = config.DEFAULT_PARAMS,
    set_: SetOpt = None,
) -> None:
    """Upload the cache's shard sets to S3 (credentials and endpoint from the AWS_* environment)."""
    if not s3.is_s3(dest):
        raise DataError(f"{dest}: expected s3://bucket/prefix")
    p = _params(params, set_)
    present = [name for name in CACHED if (paths.CACHE / name).is_dir()]
    if not present:
        raise DataError(f"{paths.CACHE} holds no shard sets: run `steelflow split` (and `corrupt`) first")
    keys = s3.upload(paths.CACHE, present, dest.rstrip("/"), p.data.s3_retries)
    out.print(f"pushed {len(keys)} files of {', '.join(present)} to {dest.rstrip('/')}/")
    if "splits" in present:
        out.print(f"train from there with: --set train.loader.shards={dest.rstrip('/')}/splits")
