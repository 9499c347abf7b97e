"""The Health view: the status-to-series arithmetic without Qt, then the widget rendered offscreen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trayllm.api_status import DaemonStatus, Memory, QueueStatus, RequestCounters, SloRow
from trayllm.chat.health_series import NO_VRAM, HealthSeries, Series

GIB = 1 << 30


def status(
    tokens_out: int = 0,
    ttft: float | None = 0.21,
    errors: float | None = 0.0005,
    vram: tuple[int, int] | None = (6 * GIB, 8 * GIB),
    boot_id: str | None = "boot-a",
) -> DaemonStatus:
    """A /v1/status body with just the fields the Health view reads."""

    def row(name: str, value: float | None, threshold: float) -> SloRow:
        return SloRow(
            objective=name,
            window_s=600,
            value=value,
            threshold=threshold,
            budget_left=None,
            state="insufficient" if value is None else "ok",
            samples=0 if value is None else 50,
        )

    return DaemonStatus(
        state="ready",
        model=None,
        uptime_s=10.0,
        pid=1,
        version="0.1.0",
        boot_id=boot_id,
        queue=QueueStatus(
            depth=0, capacity=8, in_flight=0, max_batch=4, backlog_cap_active=False, backlog_max_tokens=0
        ),
        requests=RequestCounters(tokens_out=tokens_out),
        vram=Memory(used_bytes=vram[0], total_bytes=vram[1]) if vram else None,
        slo=[
            row("first_token_latency_p99", ttft, 3.0),
            row("error_rate", errors, 0.001),
            row("peak_vram", None if vram is None else 0.75, 0.8),
        ],
    )


def values(series: Series) -> list[float | None]:
    return [p.value for p in series.points]


# --- the series, plain Python ---------------------------------------------------------------------------------


def test_tokens_per_second_from_counter_deltas_restarts_after_a_daemon_restart() -> None:
    health = HealthSeries()
    for at, tokens in [(0.0, 100), (2.0, 300), (4.0, 300), (6.0, 40), (8.0, 140)]:
        health.add(status(tokens_out=tokens), at)
    # first sample has no previous one; 6.0 is a restart (counter went down): gaps, never a negative rate
    assert values(health.tokens_per_s) == [None, 100.0, 0.0, None, 50.0]
    assert health.tokens_per_s.label() == "Decode 50.0 tok/s"


def test_a_new_boot_id_restarts_the_rate_even_if_the_counter_grew() -> None:
    health = HealthSeries()
    health.add(status(tokens_out=10, boot_id="a"), 0.0)
    health.add(status(tokens_out=500, boot_id="b"), 2.0)
    health.add(status(tokens_out=520, boot_id="b"), 4.0)
    assert values(health.tokens_per_s) == [None, None, 10.0]


def test_slo_rows_and_vram_in_display_units() -> None:
    health = HealthSeries()
    health.add(status(ttft=0.21, errors=0.0005), 0.0)
    assert health.first_token_p99.label() == "P99 first token 0.21 s"
    assert health.vram.label() == "VRAM 75 %"
    assert health.error_rate.label() == "Errors 0.05 %"
    assert health.vram.threshold == pytest.approx(80.0)
    assert health.error_rate.threshold == pytest.approx(0.1)
    assert health.first_token_p99.threshold == pytest.approx(3.0)


def test_missing_values_are_no_data_not_zero() -> None:
    health = HealthSeries()
    health.add(status(ttft=None, errors=None, vram=None), 0.0)
    assert health.first_token_p99.latest is None
    assert health.error_rate.latest is None
    assert health.vram.latest is None
    assert health.first_token_p99.label() == "P99 first token no data"
    assert health.error_rate.label() == "Errors no data"
    assert health.vram.label() == NO_VRAM == "CPU: no VRAM"
    assert health.tokens_per_s.label() == "Decode no data"
    # a GPU again (the daemon moved devices): a value, and the label says "no data" rather than "CPU"
    health.add(status(vram=(2 * GIB, 8 * GIB)), 2.0)
    assert health.vram.label() == "VRAM 25 %"


def test_history_is_bounded() -> None:
    health = HealthSeries(maxlen=300)
    for i in range(400):
        health.add(status(tokens_out=i * 10), i * 2.0)
    for series in health.all:
        assert len(series.points) == 300
    assert health.tokens_per_s.points[0].at == 200.0
    assert health.tokens_per_s.latest == pytest.approx(5.0)


def test_series_module_does_not_import_qt() -> None:
    code = "import sys, trayllm.chat.health_series; assert not any(m.startswith('PySide6') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the widget, offscreen --------------------------------------------------------------------------------------


def _fill(view: object, samples: int = 5, **kwargs: object) -> None:
    for i in range(samples):
        view.add_sample(status(tokens_out=i * 100, **kwargs), 1000.0 + 2 * i)


def test_view_renders_offscreen_and_labels_show_latest_values(qtbot, tmp_path) -> None:
    HealthView = pytest.importorskip("trayllm.chat.health").HealthView  # noqa: N806 (a class)

    view = HealthView()
    qtbot.addWidget(view)
    view.resize(640, 480)
    _fill(view)
    image = view.grab().toImage()
    assert not image.isNull()
    assert image.width() >= 600 and image.height() >= 400
    assert len({image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}) > 3
    assert image.save(str(tmp_path / "health.png"))
    assert view.labels["first_token_p99"].text() == "P99 first token 0.21 s"
    assert view.labels["vram"].text() == "VRAM 75 %"
    assert view.labels["tokens_per_s"].text() == "Decode 50.0 tok/s"
    assert view.labels["error_rate"].text() == "Errors 0.05 %"
    for chart in view.charts.values():
        assert not chart.grab().isNull()


def test_view_on_cpu_says_no_vram(qtbot) -> None:
    HealthView = pytest.importorskip("trayllm.chat.health").HealthView  # noqa: N806 (a class)

    view = HealthView()
    qtbot.addWidget(view)
    view.resize(640, 480)
    _fill(view, samples=3, vram=None, ttft=None)
    assert view.labels["vram"].text() == "CPU: no VRAM"
    assert view.labels["first_token_p99"].text() == "P99 first token no data"
    assert not view.grab().isNull()


def test_view_renders_before_any_sample(qtbot) -> None:
    HealthView = pytest.importorskip("trayllm.chat.health").HealthView  # noqa: N806 (a class)

    view = HealthView()
    qtbot.addWidget(view)
    image = view.grab().toImage()
    assert not image.isNull() and image.width() > 0
    assert view.labels["vram"].text() == "VRAM no data"


def test_repainting_does_not_drain_references_to_none(qtbot) -> None:
    """PySide6 6.12.0 on Python 3.11 dropped a reference to None on every void Qt call, so a window open long
    enough aborted (none_dealloc); pyproject pins PySide6 below 6.12, and this guards the pin."""
    HealthView = pytest.importorskip("trayllm.chat.health").HealthView  # noqa: N806 (a class)

    view = HealthView()
    qtbot.addWidget(view)
    view.resize(640, 480)
    _fill(view, samples=50)
    before = sys.getrefcount(None)
    for _ in range(5):
        view.grab()
    assert sys.getrefcount(None) >= before - 50
