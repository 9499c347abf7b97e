"""trayllm.pull's pieces that the end-to-end pulls (tests/cli/test_pull.py) cannot reach: the bar huggingface_hub
drives on its Xet path (the real hub's large files; the stand-in serves plain HTTP), and the size text."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

from trayllm.pull import PullFile, PullPlan, file_bar_class, size_text


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
