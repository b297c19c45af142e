"""Shards on S3 (a real SeaweedFS): `steelflow shards push`, then training streams from the bucket."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from steelflow.cli import app
from steelflow.config import load_params
from steelflow.data import cache
from steelflow.errors import DataError
from steelflow.steps.ingest import ingest
from steelflow.steps.split import split
from steelflow.steps.validate import validate
from steelflow.training.loop import train
from tests.support.helpers import repo_params, write_params
from tests.support.servers import S3_KEYS, s3_client, s3_server

BUCKET = "steelflow"
ONE_EPOCH = {
    "data": {"synthetic": {"per_class": 12, "image_size": 64, "seed": 0}, "cache_size": 16, "shard_size": 5},
    "model": {"image_size": 16},
    "train": {"epochs": 1, "threads": 1, "loader": {"mode": "stream", "workers": 1}},
}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3"), BUCKET) as url:
        yield url


@pytest.fixture
def s3_env(s3, monkeypatch):
    for key, value in {**S3_KEYS, "AWS_ENDPOINT_URL": s3, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    return s3


def _split_here(folder: Path) -> None:
    write_params(folder, repo_params(**ONE_EPOCH))
    p = load_params()
    ingest(p.data)
    validate(p.data, p.validate_, Path("data/manifest.csv"))
    split(p.data, p.split)


def test_training_streams_its_shards_from_s3_to_the_weights_it_trains_from_disk(project, s3_env, tmp_path):
    _split_here(project)
    runner = CliRunner()
    pushed = runner.invoke(app, ["shards", "push", f"s3://{BUCKET}/run1"])
    assert pushed.exit_code == 0, pushed.output
    assert "train.loader.shards=s3://steelflow/run1/splits" in pushed.output
    shown = runner.invoke(app, ["shards", "verify", f"s3://{BUCKET}/run1/splits/train"])
    assert shown.exit_code == 0 and "match their index" in shown.output, shown.output

    remote = cache.open(f"s3://{BUCKET}/run1/splits/train")
    local = cache.open("data/cache/splits/train")
    assert len(remote) == len(local) and remote.counts == local.counts and len(local.counts) > 2
    ids = np.arange(len(local))[::-1]
    assert np.array_equal(remote.read(ids), local.read(ids))

    p = load_params()
    train(p.model, p.train, model_path=tmp_path / "disk.pt", checkpoint_path=tmp_path / "c1.pt")
    from_s3 = p.train.model_copy(
        update={"loader": p.train.loader.model_copy(update={"shards": f"s3://{BUCKET}/run1/splits"})}
    )
    train(p.model, from_s3, model_path=tmp_path / "s3.pt", checkpoint_path=tmp_path / "c2.pt")
    a = torch.load(tmp_path / "disk.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "s3.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same bytes, the same batches: the same weights


def test_a_shard_changed_on_s3_is_refused_by_name(project, s3_env):
    _split_here(project)
    assert CliRunner().invoke(app, ["shards", "push", f"s3://{BUCKET}/run2"]).exit_code == 0
    client = s3_client(s3_env)
    key = "run2/splits/train/shard-000001.tar"
    body = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    body[600] ^= 0xFF
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))
    remote = cache.open(f"s3://{BUCKET}/run2/splits/train")
    with pytest.raises(DataError, match=r"run2/splits/train/shard-000001\.tar changed since it was written"):
        remote.read(np.arange(len(remote)))
    out = CliRunner().invoke(app, ["shards", "verify", f"s3://{BUCKET}/run2/splits/train"])
    assert out.exit_code == DataError.exit_code and "shard-000001.tar changed" in out.output


def test_a_prefix_with_no_shard_set_is_a_clear_error(s3_env):
    with pytest.raises(DataError, match=r"s3://steelflow/nowhere/train is not a shard set"):
        cache.open(f"s3://{BUCKET}/nowhere/train")
