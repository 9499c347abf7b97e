"""`python -m trayllm.bench.chat` on a small scale (its figures are for docs/BENCHMARKS.md, never asserted): each
measurement runs and reports what it measured, and the two search paths find the same conversations."""

from __future__ import annotations

from trayllm.bench import chat


def test_each_measurement_runs_and_the_report_names_them_all() -> None:
    tokens = chat.measure_tokens(sizes=(4,))
    paint = chat.measure_first_paint(messages=60)
    search = chat.measure_search(messages=400)
    assert [t.messages for t in tokens] == [4] and tokens[0].median_ms > 0 and tokens[0].before_ms > 0
    assert paint[0] > 0 and paint[1] > 0
    assert [s.meaning for s in search] == ["rare word", "common word", "two words", "half-typed word", "two letters"]
    assert all(s.found > 0 for s in search if s.meaning != "rare word")
    assert all(s.found == s.like_found for s in search)
    report = chat.to_markdown(tokens, paint, search, "python -m trayllm.bench.chat")
    assert report.startswith("`python -m trayllm.bench.chat`") and "| 4 |" in report and "`quok`" in report
