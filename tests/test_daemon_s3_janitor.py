"""The S3 janitor of `mreg serve --store s3://…` on a real SeaweedFS (tests/seaweed.py): a dead replica's
incomplete multipart upload and fill chunk are removed once older than `--s3-sweep-after` (at start and then
periodically), a younger upload is left alone, and `--s3-lifecycle-days` sets the bucket's rule at start or
logs one line when the server refuses it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mreg.cli.main import main
from tests.daemons import start_daemon, wait_for
from tests.seaweed import BUCKET, READER_KEY, READER_SECRET, SeaweedServer
from tests.testhub import TestHub

pytestmark = pytest.mark.timeout(120)
BOUND = 16.0
"""--s3-sweep-after in these tests (seconds): the daemon sweeps every quarter of it, so a sweep begins
within about half of it after an upload (with room for a loaded machine)."""


def uploads(seaweed: SeaweedServer, prefix: str) -> set[str]:
    """The ids of the incomplete multipart uploads below ``prefix``."""
    answer = seaweed.client().list_multipart_uploads(Bucket=BUCKET, Prefix=prefix + "/")
    return {u["UploadId"] for u in answer.get("Uploads", [])}


def keys(seaweed: SeaweedServer, prefix: str) -> set[str]:
    answer = seaweed.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    return {o["Key"] for o in answer.get("Contents", [])}


def log_events(log: Path, event: str) -> list[dict]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def test_a_dead_replicas_upload_and_chunks_are_swept_and_a_live_upload_is_not(
        test_hub: TestHub, tmp_path: Path, s3_url: str, seaweed: SeaweedServer) -> None:
    prefix, client = s3_url.split("/", 3)[3], seaweed.client()
    dead = client.create_multipart_upload(Bucket=BUCKET, Key=f"{prefix}/blobs/{'d' * 64}")["UploadId"]
    chunk = f"{prefix}/fills/{'d' * 64}/100/{0:016x}"
    client.put_object(Bucket=BUCKET, Key=chunk, Body=b"x" * 100)
    started = time.time()
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--store", s3_url, "--s3-sweep-after", f"{BOUND}s")
    try:
        wait_for(lambda: dead not in uploads(seaweed, prefix) and not keys(seaweed, prefix), 30,
                 "the dead replica's upload and chunk swept")
        assert time.time() - started >= BOUND - 1  # not before they were older than the bound (S3 dates to the second)
        metrics = daemon.metrics()
        assert (metrics["mreg_s3_swept_uploads_total"], metrics["mreg_s3_swept_chunks_total"]) == (1, 1)
        swept = [(e["uploads"], e["chunks"]) for e in log_events(daemon.log, "s3_swept")]
        assert swept in ([(1, 1)], [(1, 0), (0, 1)], [(0, 1), (1, 0)]), swept  # one line per sweep that removed some

        before = time.monotonic()  # a fresh upload: another replica publishing
        live = client.create_multipart_upload(Bucket=BUCKET, Key=f"{prefix}/blobs/{'e' * 64}")
        passes = daemon.metrics()["mreg_s3_sweeps_total"]
        wait_for(lambda: daemon.metrics()["mreg_s3_sweeps_total"] >= passes + 2, 30, "a sweep begun after the upload")
        assert time.monotonic() - before < BOUND - 1, "too slow to show that a young upload stays"
        assert live["UploadId"] in uploads(seaweed, prefix)
        assert daemon.metrics()["mreg_s3_swept_uploads_total"] == 1
        client.abort_multipart_upload(Bucket=BUCKET, Key=live["Key"], UploadId=live["UploadId"])
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()


def test_the_default_sweeps_at_start_and_off_never(test_hub: TestHub, tmp_path: Path, s3_url: str,
                                                    seaweed: SeaweedServer) -> None:
    prefix, client = s3_url.split("/", 3)[3], seaweed.client()
    recent = client.create_multipart_upload(Bucket=BUCKET, Key=f"{prefix}/blobs/{'d' * 64}")
    try:
        for args, sweeps in (((), 1), (("--s3-sweep-after", "off"), 0)):
            daemon = start_daemon(tmp_path / f"home{sweeps}", test_hub.endpoint, "--store", s3_url, *args)
            try:
                if sweeps:  # the default (1d) sweeps at start; the next sweep is an hour away
                    wait_for(lambda: daemon.metrics()["mreg_s3_sweeps_total"] == 1, 30, "the sweep at start")
                else:
                    assert daemon.metrics()["mreg_s3_sweeps_total"] == 0
                assert daemon.metrics()["mreg_s3_swept_uploads_total"] == 0
                assert recent["UploadId"] in uploads(seaweed, prefix)  # younger than a day
            finally:
                assert daemon.stop() == 0, daemon.log.read_text()
    finally:
        client.abort_multipart_upload(Bucket=BUCKET, Key=recent["Key"], UploadId=recent["UploadId"])


def test_the_lifecycle_rule_is_set_at_start(test_hub: TestHub, tmp_path: Path, seaweed: SeaweedServer,
                                            s3_env: dict[str, str]) -> None:
    bucket = seaweed.new_bucket()  # a bucket-wide setting: a bucket of its own
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--store", f"s3://{bucket}/mreg",
                          "--s3-lifecycle-days", "3")
    try:
        rules = seaweed.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert [(r["Filter"], r["AbortIncompleteMultipartUpload"]) for r in rules] == [
            ({"Prefix": "mreg/"}, {"DaysAfterInitiation": 3})]
        assert log_events(daemon.log, "s3_lifecycle_refused") == []
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()


def test_a_refused_lifecycle_rule_is_one_line_and_the_daemon_serves(
        test_hub: TestHub, tmp_path: Path, s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", READER_KEY)  # may read and list, not set a bucket's lifecycle
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", READER_SECRET)
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--store", s3_url, "--s3-lifecycle-days", "1",
                          "--s3-sweep-after", "0")
    try:
        refused = log_events(daemon.log, "s3_lifecycle_refused")
        assert len(refused) == 1 and "AccessDenied" in refused[0]["message"], refused
        assert "\n" not in refused[0]["message"] and READER_SECRET not in daemon.log.read_text()
        assert daemon.get("/healthz")[0] == 200
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()


def test_the_s3_options_need_an_s3_store(tmp_path: Path) -> None:
    env = {"MREG_HOME": str(tmp_path / "home")}
    for args in (["--s3-sweep-after", "1h"], ["--s3-lifecycle-days", "2"], ["--evict-grace", "1h"]):
        result = CliRunner().invoke(main, ["serve", "--port", "0", *args], env=env)
        assert result.exit_code == 2 and "need an S3 store" in result.output, result.output
    for bad in ("-1s", "soon", ""):
        result = CliRunner().invoke(main, ["serve", "--port", "0", "--s3-sweep-after", bad],
                                    env={**env, "MREG_STORE": "s3://some-bucket/p"})
        assert result.exit_code == 2 and "invalid interval" in result.output, result.output
