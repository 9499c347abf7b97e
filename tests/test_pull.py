"""trayllm.pull's pieces that the end-to-end pulls (tests/cli/test_pull.py) cannot reach: the bar huggingface_hub
drives on its Xet path (the real hub's large files; the stand-in serves plain HTTP), the size text, and the digest
check of a file that arrived corrupt (the stand-in sends what it lists)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from hub_standin import COMMIT
from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

from trayllm.errors import HubError
from trayllm.hub import HubId
from trayllm.pull import PullFile, PullPlan, file_bar_class, size_text, verify


class Counted:
    """A PullProgress that only adds up the bytes reported."""

    def __init__(self) -> None:
        self.bytes = 0

    def begin(self, plan: PullPlan) -> None: ...

    def file_started(self, file: PullFile) -> None: ...

    def advance(self, nbytes: int) -> None:
        self.bytes += nbytes

    def file_done(self, file: PullFile) -> None: ...


def report(written: int, transferred: int) -> SimpleNamespace:
    """What hf_xet hands the progress callback: running totals of bytes written and bytes received."""
    return SimpleNamespace(
        total_bytes=1000,
        total_bytes_completed=written,
        total_transfer_bytes_completed=transferred,
        total_bytes_completion_rate=None,
        total_transfer_bytes_completion_rate=None,
    )


def test_a_xet_download_counts_the_bytes_written_once_not_the_bytes_received_too():
    counted = Counted()
    with XetDownloadProgressReporter(
        reconstruction_desc="model.safetensors",
        total=1000,
        log_level=logging.WARNING,
        tqdm_class=file_bar_class(counted),
    ) as reporter:
        reporter.update_progress(report(written=300, transferred=250))
        reporter.update_progress(report(written=1000, transferred=700))
    assert counted.bytes == 1000


def test_sizes_read_in_decimal_units():
    assert [size_text(n) for n in (0, 999, 1000, 12_582_912, 538_090_408, 15.2e9, 1.2e12)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "12.6 MB",
        "538.1 MB",
        "15.2 GB",
        "1200.0 GB",
    ]


def cached(cache: Path, name: str, content: bytes, blob_name: str) -> Path:
    """``name`` of org/x at COMMIT in a Hugging Face cache as huggingface_hub lays one out: its snapshot entry
    a link to a blob named after the digest the hub announced."""
    repo = cache / "models--org--x"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / COMMIT).mkdir(parents=True, exist_ok=True)
    (repo / "blobs" / blob_name).write_bytes(content)
    link = repo / "snapshots" / COMMIT / name
    link.symlink_to(Path("..", "..", "blobs", blob_name))
    return link


def plan_of(*files: PullFile) -> PullPlan:
    return PullPlan(HubId("org/x"), COMMIT, list(files))


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def test_files_matching_their_digests_pass(tmp_path: Path):
    weights, config = b"the weights", b'{"model_type": "llama"}'
    cached(tmp_path, "model.safetensors", weights, hashlib.sha256(weights).hexdigest())
    cached(tmp_path, "config.json", config, git_blob_id(config))  # a small file: stored under its git blob id
    checked: list[str] = []
    plan = plan_of(PullFile("model.safetensors", len(weights), False), PullFile("config.json", len(config), False))
    verify(plan, tmp_path, before=lambda file: checked.append(file.name))
    assert checked == ["model.safetensors", "config.json"]


@pytest.mark.parametrize("kind", ["sha256", "git blob id", "listed sha256"])
def test_a_corrupt_file_is_refused_and_taken_out_of_the_cache(tmp_path: Path, kind: str):
    sent, arrived = b"what the hub has", b"what arrived inst"
    listed = hashlib.sha256(sent).hexdigest()
    blob_name = git_blob_id(sent) if kind == "git blob id" else listed
    link = cached(tmp_path, "model.gguf", arrived, "from-an-odd-etag" if kind == "listed sha256" else blob_name)
    blob = link.resolve()
    file = PullFile("model.gguf", len(sent), False, listed if kind == "listed sha256" else None)
    with pytest.raises(HubError) as caught:
        verify(plan_of(file), tmp_path)
    assert caught.value.message.startswith("model.gguf of org/x arrived corrupt")
    assert caught.value.message.endswith("and was removed: pull it again")
    assert not link.exists() and not link.is_symlink() and not blob.exists()


def test_a_file_already_cached_is_not_read_again(tmp_path: Path):
    cached(tmp_path, "model.gguf", b"corrupt, but from an earlier pull", "0" * 64)
    verify(plan_of(PullFile("model.gguf", 33, True)), tmp_path)  # only what this pull fetched is checked
