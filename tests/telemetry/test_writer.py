"""RecordWriter: exact JSON lines, private files, rotation, and a write() that never waits for the disk."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

import pytest

from trayllm.telemetry import writer as writer_module
from trayllm.telemetry.reader import ReadStats, iter_records
from trayllm.telemetry.record import to_document
from trayllm.telemetry.writer import RecordWriter


def _doc(make_record, i: int) -> dict:
    return to_document(make_record(request_id=f"req-{i:04d}"))


def test_lines_are_exactly_the_documents(tmp_path: Path, make_gpu_record):
    path = tmp_path / "requests.jsonl"
    docs = [_doc(make_gpu_record, i) for i in range(3)]
    docs[1]["message"] = "naïve → ünïcode"
    with RecordWriter(path, max_bytes=1 << 20, backups=2) as writer:
        for doc in docs:
            writer.write(doc)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == docs  # nothing added: no asctime, levelname, extra message
    assert list(json.loads(lines[0])) == list(docs[0])  # key order kept: @timestamp first
    assert json.loads(lines[0])["@timestamp"] == docs[0]["@timestamp"]
    assert "naïve → ünïcode" in lines[1]  # UTF-8, not \u escapes
    assert list(iter_records(path)) == docs


def test_file_0600_in_a_new_directory_0700(tmp_path: Path, make_gpu_record):
    path = tmp_path / "state" / "trayllm" / "requests.jsonl"
    with RecordWriter(path, max_bytes=1 << 20, backups=1) as writer:
        writer.write(_doc(make_gpu_record, 0))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700


def test_an_existing_loose_file_is_tightened(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    path.write_text("")
    path.chmod(0o644)
    RecordWriter(path, max_bytes=0, backups=0).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_rotation_keeps_n_backups_and_the_reader_reads_them_in_order(tmp_path: Path, make_gpu_record):
    path = tmp_path / "requests.jsonl"
    line_len = len(json.dumps(_doc(make_gpu_record, 0), ensure_ascii=False)) + 1
    max_bytes = line_len * 4 + 10  # four lines a file
    with RecordWriter(path, max_bytes=max_bytes, backups=3) as writer:
        for i in range(30):
            writer.write(_doc(make_gpu_record, i))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["requests.jsonl", "requests.jsonl.1", "requests.jsonl.2", "requests.jsonl.3"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= max_bytes
        assert p.stat().st_mode & 0o777 == 0o600
    stats = ReadStats()
    ids = [doc["event"]["id"] for doc in iter_records(path, stats=stats)]
    assert ids == [f"req-{i:04d}" for i in range(30 - len(ids), 30)]  # the newest, oldest first, none missing
    assert len(ids) == 14  # 3 full backups of 4 + the live file's 2
    assert (stats.files, stats.corrupt, stats.partial) == (4, 0, 0)
    assert [d["event"]["id"] for d in iter_records(path, include_rotated=False)] == ["req-0028", "req-0029"]


def test_write_returns_at_once_while_the_disk_is_slow(tmp_path: Path, make_gpu_record, monkeypatch):
    slow_emit = writer_module._RecordFileHandler.emit

    def sleepy_emit(self, record):
        time.sleep(0.05)  # a stalled disk: 50 ms a line
        slow_emit(self, record)

    monkeypatch.setattr(writer_module._RecordFileHandler, "emit", sleepy_emit)
    path = tmp_path / "requests.jsonl"
    docs = [_doc(make_gpu_record, i) for i in range(20)]
    writer = RecordWriter(path, max_bytes=1 << 20, backups=1)
    times = []
    for doc in docs:
        t0 = time.perf_counter()
        writer.write(doc)
        times.append(time.perf_counter() - t0)
    written_by_then = path.read_bytes().count(b"\n")
    t0 = time.perf_counter()
    writer.close()
    close_s = time.perf_counter() - t0
    print(
        f"write(): median {statistics.median(times) * 1e6:.0f} us, max {max(times) * 1e6:.0f} us; "
        f"sink 50 ms/line; close() drained the rest in {close_s:.2f} s"
    )
    assert written_by_then < len(docs)  # the callers did not wait for the sink
    assert statistics.median(times) < 0.002 and max(times) < 0.045  # microseconds; one line on disk: 50 ms
    assert close_s > 0.3  # close() waited for the queue to drain...
    assert list(iter_records(path)) == docs  # ...and everything got there, in order


def test_each_line_is_one_write_call(tmp_path: Path, make_gpu_record, monkeypatch):
    calls: list[int] = []
    real_open = writer_module._RecordFileHandler._open

    class CountingStream:
        def __init__(self, raw):
            self.raw = raw

        def write(self, data):
            calls.append(len(data))
            return self.raw.write(data)

        def __getattr__(self, name):
            return getattr(self.raw, name)

    monkeypatch.setattr(writer_module._RecordFileHandler, "_open", lambda self: CountingStream(real_open(self)))
    path = tmp_path / "requests.jsonl"
    big = to_document(make_gpu_record(output_text="x" * 200_000), include_content=True)  # far over any buffer
    with RecordWriter(path, max_bytes=0, backups=0) as writer:
        writer.write(big)
        writer.write(_doc(make_gpu_record, 1))
    sizes = [len(line) for line in path.read_bytes().splitlines(keepends=True)]
    assert calls == sizes


def test_concurrent_writers_never_interleave(tmp_path: Path, make_gpu_record):
    path = tmp_path / "requests.jsonl"
    with RecordWriter(path, max_bytes=0, backups=0) as writer:

        def burst(t: int) -> None:
            for i in range(50):
                writer.write(_doc(make_gpu_record, t * 1000 + i))

        threads = [threading.Thread(target=burst, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    stats = ReadStats()
    ids = [doc["event"]["id"] for doc in iter_records(path, stats=stats)]
    assert len(ids) == 200 and stats.skipped == 0
    for t in range(4):  # each thread's own records stay in its order
        mine = [i for i in ids if i.startswith(f"req-{t}")]
        assert mine == sorted(mine)


def test_bad_documents_raise_and_the_writer_carries_on(tmp_path: Path, make_gpu_record):
    path = tmp_path / "requests.jsonl"
    writer = RecordWriter(path, max_bytes=0, backups=0)
    bad = _doc(make_gpu_record, 0)
    bad["llm"]["tokens_per_second"] = float("nan")
    with pytest.raises(ValueError):
        writer.write(bad)
    writer.write(_doc(make_gpu_record, 1))
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(_doc(make_gpu_record, 2))
    assert [d["event"]["id"] for d in iter_records(path)] == ["req-0001"]
    with pytest.raises(ValueError):
        RecordWriter(tmp_path / "x.jsonl", max_bytes=100, backups=0)


def _torn(line: str) -> bytes:
    """The first half of a record line, no newline: what a crash in the middle of its write leaves."""
    return line.encode()[: len(line) // 2]


def test_a_torn_last_line_is_closed_before_the_next_record(tmp_path: Path, make_gpu_record):
    path = tmp_path / "requests.jsonl"
    before = _doc(make_gpu_record, 0)
    fragment = _torn(json.dumps(_doc(make_gpu_record, 1)))
    path.write_bytes(json.dumps(before).encode() + b"\n" + fragment)  # the daemon died writing req-0001
    after = [_doc(make_gpu_record, 2), _doc(make_gpu_record, 3)]
    with RecordWriter(path, max_bytes=1 << 20, backups=1) as writer:
        assert path.read_bytes().endswith(fragment + b"\n")  # closed at open, before any new record
        for doc in after:
            writer.write(doc)
    lines = path.read_bytes().splitlines()
    assert lines[1] == fragment  # the fragment alone on its line, not a byte moved or lost
    assert [json.loads(line) for line in lines[:1] + lines[2:]] == [before, *after]  # the new records intact
    stats = ReadStats()
    assert list(iter_records(path, stats=stats)) == [before, *after]
    assert (stats.records, stats.corrupt, stats.partial) == (3, 1, 0)


def test_a_whole_last_line_gets_nothing_added(tmp_path: Path, make_gpu_record):
    path = tmp_path / "requests.jsonl"
    whole = json.dumps(_doc(make_gpu_record, 0)).encode() + b"\n"
    path.write_bytes(whole)
    RecordWriter(path, max_bytes=1 << 20, backups=1).close()
    assert path.read_bytes() == whole


def test_a_write_that_fails_midway_does_not_take_the_next_record_with_it(
    tmp_path: Path, make_gpu_record, monkeypatch, capsys
):
    real_open = writer_module._RecordFileHandler._open

    class DiskFullOnce:
        """Takes half of the first line, then fails, as a disk that fills up in the middle of a write."""

        def __init__(self, raw):
            self.raw, self.failed = raw, False

        def write(self, data):
            if not self.failed:
                self.failed = True
                self.raw.write(bytes(data[: len(data) // 2]))
                raise OSError(28, "No space left on device")
            return self.raw.write(data)

        def __getattr__(self, name):
            return getattr(self.raw, name)

    monkeypatch.setattr(writer_module._RecordFileHandler, "_open", lambda self: DiskFullOnce(real_open(self)))
    path = tmp_path / "requests.jsonl"
    with RecordWriter(path, max_bytes=0, backups=0) as writer:
        writer.write(_doc(make_gpu_record, 0))  # half of it reaches the disk
        writer.write(_doc(make_gpu_record, 1))
    assert "No space left on device" in capsys.readouterr().err  # logging's report of the failed line
    stats = ReadStats()
    assert [d["event"]["id"] for d in iter_records(path, stats=stats)] == ["req-0001"]
    assert (stats.corrupt, stats.partial) == (1, 0)
