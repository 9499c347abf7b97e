"""Reading records back: damage is skipped and counted, rotation is followed by file identity."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from trayllm.telemetry.reader import ReadStats, follow, iter_records
from trayllm.telemetry.writer import RecordWriter


def _line(i: int) -> bytes:
    return json.dumps({"event": {"id": f"r{i}"}}).encode() + b"\n"


def _ids(docs) -> list[str]:
    return [d["event"]["id"] for d in docs]


def test_partial_last_line_and_corrupt_lines_are_skipped_and_counted(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    path.write_bytes(_line(1) + b"{not json\n" + b"[1, 2]\n" + b"\n" + b"\xff\xfe\n" + _line(2) + b'{"event": {"id"')
    stats = ReadStats()
    assert _ids(iter_records(path, stats=stats)) == ["r1", "r2"]
    assert (stats.records, stats.corrupt, stats.partial, stats.skipped) == (2, 3, 1, 4)


def test_rotated_files_oldest_first_and_missing_files(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    assert list(iter_records(path)) == []
    (tmp_path / "requests.jsonl.2").write_bytes(_line(1) + _line(2))
    (tmp_path / "requests.jsonl.1").write_bytes(_line(3) + b'{"trunc')  # a crash mid-line, then rotated
    assert _ids(iter_records(path)) == ["r1", "r2", "r3"]  # no live file yet: backups only
    path.write_bytes(_line(4))
    assert _ids(iter_records(path)) == ["r1", "r2", "r3", "r4"]
    assert _ids(iter_records(path, include_rotated=False)) == ["r4"]
    (tmp_path / "requests.jsonl.4").write_bytes(_line(0))  # beyond a gap: not part of the set
    assert _ids(iter_records(path)) == ["r1", "r2", "r3", "r4"]


def test_a_file_held_under_two_names_is_read_once(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    path.write_bytes(_line(1))
    (tmp_path / "requests.jsonl.1").hardlink_to(path)  # what a rotation during opening looks like
    stats = ReadStats()
    assert _ids(iter_records(path, stats=stats)) == ["r1"]
    assert stats.files == 1


def _collect(path: Path, stop: threading.Event, out: list, stats: ReadStats, **kw) -> threading.Thread:
    def run() -> None:
        out.extend(follow(path, poll_s=0.005, stop=stop, stats=stats, **kw))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_follow_tails_across_rotations(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    writer = RecordWriter(path, max_bytes=len(_line(0)) * 3 + 5, backups=50)
    writer.write({"event": {"id": "before"}})
    writer.close()
    out: list = []
    stop = threading.Event()
    stats = ReadStats()
    thread = _collect(path, stop, out, stats)  # from the end: "before" is not new
    _wait_for(lambda: stats.files == 1)  # it holds the file, at its end: what is written from now on is new
    writer = RecordWriter(path, max_bytes=len(_line(0)) * 3 + 5, backups=50)
    expected = []
    for i in range(40):  # 13 rotations, some of them inside one poll
        writer.write({"event": {"id": f"r{i}"}})
        expected.append(f"r{i}")
        if i % 7 == 0:
            time.sleep(0.02)
    writer.close()
    _wait_for(lambda: len(out) >= len(expected))
    stop.set()
    thread.join(5)
    assert _ids(out) == expected
    assert stats.skipped == 0 and stats.files > 10


def test_follow_waits_for_whole_lines_and_for_the_file(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    out: list = []
    stop = threading.Event()
    thread = _collect(path, stop, out, ReadStats(), from_start=True)
    time.sleep(0.03)  # no file yet
    with open(path, "ab", buffering=0) as f:
        f.write(_line(1) + b'{"event": {"id": ')
        _wait_for(lambda: len(out) == 1)
        time.sleep(0.03)
        assert _ids(out) == ["r1"]  # the half line is not yielded
        f.write(b'"r2"}}\n')
        _wait_for(lambda: len(out) == 2)
    stop.set()
    thread.join(5)
    assert _ids(out) == ["r1", "r2"]


def _rotate(path: Path, new_live: bytes) -> None:
    """What RecordWriter's rotation does on disk: shift path.N to path.N+1, path to path.1, start a new path."""
    backups = sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]), reverse=True)
    for backup in backups:
        backup.rename(path.with_name(f"{path.name}.{int(backup.suffix[1:]) + 1}"))
    path.rename(path.with_name(path.name + ".1"))
    path.write_bytes(new_live)


def test_follow_loses_no_file_to_a_rotation_while_it_reads_the_backups(tmp_path: Path):
    """A rotation that lands while follow is still reading the backups it found at the previous one: the file
    that was live then is a backup by the time follow gets to it, and is read all the same."""
    path = tmp_path / "requests.jsonl"
    path.write_bytes(_line(0))
    stop = threading.Event()
    fuse = threading.Timer(10, stop.set)  # a follow that misses a record ends here rather than waiting forever
    fuse.start()
    records = follow(path, poll_s=0.01, from_start=True, stop=stop)
    assert _ids([next(records)]) == ["r0"]
    _rotate(path, _line(1))
    _rotate(path, _line(2))  # two rotations in one poll: r1 now sits in a backup, r2 is live
    assert _ids([next(records)]) == ["r1"]  # follow is now reading that backup...
    _rotate(path, _line(3))  # ...when r2's file is rotated away too
    assert _ids([next(records), next(records)]) == ["r2", "r3"]
    records.close()
    fuse.cancel()


def test_a_line_torn_by_a_crash_is_skipped_and_counted_and_the_next_record_is_whole(tmp_path: Path):
    """The daemon died in the middle of r2's line; a follower waits on the fragment, and once a new writer
    opens the file the fragment is one corrupt line and r3, written after it, arrives whole."""
    path = tmp_path / "requests.jsonl"
    path.write_bytes(_line(1) + _line(2)[:9])
    out: list = []
    stop = threading.Event()
    followed = ReadStats()
    thread = _collect(path, stop, out, followed, from_start=True)
    _wait_for(lambda: len(out) == 1)
    with RecordWriter(path, max_bytes=0, backups=0) as writer:
        writer.write({"event": {"id": "r3"}})
    _wait_for(lambda: len(out) == 2)
    stop.set()
    thread.join(5)
    assert _ids(out) == ["r1", "r3"] and (followed.corrupt, followed.partial) == (1, 0)
    read = ReadStats()
    assert _ids(iter_records(path, stats=read)) == ["r1", "r3"]
    assert (read.records, read.corrupt, read.partial) == (2, 1, 0)
