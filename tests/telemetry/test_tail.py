"""The one follower of rotating record files on its own: positions by file identity, rotation, torn lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from trayllm.telemetry import tail as tail_module
from trayllm.telemetry.tail import Cursor, RotatingTail, live_cursor, rotation_order


def test_the_tail_keeps_its_place_across_renames_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"a\nb\nhalf")
    tail = RotatingTail(path)
    assert tail.read(10) == [b"a", b"b"]
    cursor = tail.cursor
    tail.close()
    with path.open("ab") as f:
        f.write(b"-done\n")
    path.rename(tmp_path / "r.jsonl.1")  # rotation while the shipper was away
    path.write_bytes(b"c\n")
    resumed = RotatingTail(path, cursor)
    assert resumed.read(10) == [b"half-done", b"c"]
    assert resumed.backlog_bytes() == 0
    resumed.close()


def test_a_file_truncated_in_place_is_read_again_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"old-1\nold-2\n")
    with RotatingTail(path) as tail:
        assert tail.read(100) == [b"old-1", b"old-2"]
        path.write_bytes(b"new\n")  # truncated and written again, same inode
        assert tail.read(100) == [b"new"]
        assert tail.cursor is not None and tail.cursor.offset == 4


def test_a_last_line_a_newer_file_took_over_from_is_counted_and_left(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"a\nhal")
    with RotatingTail(path) as tail:
        assert tail.read(100) == [b"a"] and tail.unfinished()
        path.rename(tmp_path / "r.jsonl.1")
        path.write_bytes(b"b\n")
        assert tail.read(100) == [b"b"]
        assert (tail.unfinished_lines, tail.files_opened, tail.unfinished()) == (1, 2, False)


def _mid_rotation(tmp_path: Path) -> tuple[Path, Path]:
    """A rotation caught half-way: r.jsonl.2 went to .3 and .1 to .2, but r.jsonl is not yet .1. The file
    that was .2 (the tail's, read to its end) hides behind the gap at .1."""
    path = tmp_path / "r.jsonl"
    backup = tmp_path / "r.jsonl.3"
    backup.write_bytes(b"y\n")
    (tmp_path / "r.jsonl.2").write_bytes(b"x\n")
    path.write_bytes(b"a\n")
    return path, backup


def _finish_rotation_when_the_tail_looks_again(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def finish(_seconds: float) -> None:
        if path.exists():
            path.rename(path.with_name("r.jsonl.1"))
            path.write_bytes(b"b\n")

    monkeypatch.setattr(tail_module.time, "sleep", finish)


def test_a_file_hidden_by_a_rotation_under_way_is_waited_for_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.jsonl"
    (tmp_path / "r.jsonl.1").write_bytes(b"x\n")
    (tmp_path / "r.jsonl.2").write_bytes(b"y\n")
    path.write_bytes(b"a\n")
    with RotatingTail(path) as tail:
        assert tail.read(1) == [b"y"]  # the oldest file, to its end
        (tmp_path / "r.jsonl.2").rename(tmp_path / "r.jsonl.3")
        (tmp_path / "r.jsonl.1").rename(tmp_path / "r.jsonl.2")  # and here the tail looks for the next file
        assert [p.name for p, _ in rotation_order(path)] == ["r.jsonl"]  # the gap at .1 hides .2 and .3
        _finish_rotation_when_the_tail_looks_again(path, monkeypatch)
        assert tail.read(100) == [b"x", b"a", b"b"]


def test_a_saved_position_hidden_by_a_rotation_under_way_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, backup = _mid_rotation(tmp_path)
    st = backup.stat()
    with RotatingTail(path, Cursor(st.st_dev, st.st_ino, st.st_size)) as tail:
        _finish_rotation_when_the_tail_looks_again(path, monkeypatch)
        assert tail.read(100) == [b"x", b"a", b"b"]
        assert tail.skipped_files == 0


def test_a_position_in_a_file_rotated_away_goes_on_with_the_oldest_left(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    (tmp_path / "r.jsonl.1").write_bytes(b"x\n")
    path.write_bytes(b"a\n")
    with RotatingTail(path, Cursor(0, 0, 10)) as tail:
        assert tail.read(100) == [b"x", b"a"] and tail.skipped_files == 1


def test_live_cursor_is_the_newest_files_end_or_start(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    assert live_cursor(path, at_end=True) is None
    (tmp_path / "r.jsonl.1").write_bytes(b"x\n")  # between a rotation's rename and its reopen
    st = (tmp_path / "r.jsonl.1").stat()
    assert live_cursor(path, at_end=True) == Cursor(st.st_dev, st.st_ino, 2)
    path.write_bytes(b"abc\n")
    st = path.stat()
    assert live_cursor(path, at_end=True) == Cursor(st.st_dev, st.st_ino, 4)
    assert live_cursor(path, at_end=False) == Cursor(st.st_dev, st.st_ino, 0)
