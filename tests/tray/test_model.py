"""The tray's logic without a toolkit: every event sequence that matters gives the right icon, menu and
notifications, including reconnects, restarts and storms."""

from __future__ import annotations

import pytest

from trayllm.api_status import DaemonStatus
from trayllm.tray.model import Notification, TrayModel


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hello(boot: str = "b1", state: str = "ready", alerts: list | None = None, paused: str | None = None) -> dict:
    return {"boot_id": boot, "state": state, "paused": paused, "model": "smollm2", "alerts": alerts or []}


def oom(alert_id: str, message: str = "GPU out of memory during prefill") -> dict:
    return {"key": "oom", "state": "firing", "severity": "critical", "message": message, "id": alert_id}


def slo(key: str, state: str, alert_id: str) -> dict:
    return {"key": key, "state": state, "severity": "warning", "message": f"{key} {state}", "id": alert_id}


def labels(model: TrayModel) -> dict[str, tuple[bool, bool | None]]:
    return {item.label: (item.enabled, item.checked) for item in model.view().menu if item.label != "-"}


def test_before_any_connection_the_daemon_is_unreachable_and_can_be_started():
    model = TrayModel()
    view = model.view()
    assert view.state == "unreachable" and view.tooltip.startswith("trayllm: unreachable")
    menu = labels(model)
    assert menu["Start daemon"] == (True, None) and menu["Open chat"] == (False, None)
    assert "Pause serving" not in menu and menu["Daemon not running"] == (False, None)
    assert model.disconnected() == []  # never connected: nothing to announce


def test_healthy_then_an_oom_is_critical_and_failing_then_it_resolves():
    model = TrayModel(kibana_url="http://127.0.0.1:5601")
    assert model.connected(hello()) == []
    assert model.icon_state == "healthy"
    assert labels(model)["Open dashboards"] == (True, None)
    assert labels(model)["Pause serving"] == (True, False)
    [note] = model.event("alert.firing", oom("b1-3"), "b1-3")
    assert note == Notification("oom", "trayllm: GPU out of memory", "GPU out of memory during prefill", 2)
    assert model.icon_state == "failing"
    assert any("⚠ GPU out of memory" in line for line in model.status_lines())
    [resolved] = model.event("alert.resolved", {"key": "oom", "state": "resolved", "message": "quiet again"}, "b1-4")
    assert (resolved.key, resolved.urgency) == ("oom", 1)  # same key: it replaces the standing OOM notice
    assert model.icon_state == "healthy"


def test_slo_alerts_degrade_burn_alerts_fail_and_pause_wins_over_both():
    model = TrayModel()
    model.connected(hello())
    [note] = model.event("alert.firing", slo("slo.first_token_latency_p99", "firing", "b1-1"), "b1-1")
    assert note.urgency == 1 and note.summary == "trayllm: SLO breached: first-token latency P99"
    assert model.icon_state == "degraded"
    model.event("alert.firing", slo("burn.error_rate.fast_burn", "firing", "b1-2"), "b1-2")
    assert model.icon_state == "failing"
    model.event("serving.paused", {"reason": "gaming"}, "b1-3")
    assert model.icon_state == "paused" and labels(model)["Pause serving"] == (True, True)
    assert model.view().menu[[i.label for i in model.view().menu].index("Pause serving")].action == "resume"
    model.event("serving.resumed", {}, "b1-4")
    assert model.icon_state == "failing"


def test_loading_and_reload_show_starting_and_disable_the_controls():
    model = TrayModel()
    model.connected(hello(state="loading"))
    assert model.icon_state == "starting"
    assert labels(model)["Pause serving"] == (False, False) and labels(model)["Reload model"] == (False, None)
    model.event("model.loaded", {"model": "smollm2", "reloaded": False}, "b1-1")
    assert model.icon_state == "healthy" and labels(model)["Reload model"] == (True, None)
    model.event("model.reloading", {}, "b1-2")
    assert model.icon_state == "starting"
    [note] = model.event("model.failed", {"error": "no such file"}, "b1-3")
    assert note.urgency == 2 and model.icon_state == "failing"


def test_down_back_and_a_restart_are_announced_once_each():
    model = TrayModel()
    model.connected(hello(boot="b1"))
    [down] = model.disconnected()
    assert down.summary == "trayllm daemon is down" and model.icon_state == "unreachable"
    assert model.disconnected() == []  # still down: no repeat
    [back] = model.connected(hello(boot="b1"))
    assert back.summary == "trayllm daemon is back"
    model.disconnected()
    [restarted] = model.connected(hello(boot="b2"))
    assert restarted.summary == "trayllm daemon restarted" and restarted.key == "daemon"
    [quick] = model.connected(hello(boot="b3"))  # restarted between two connections, never seen down
    assert quick.summary == "trayllm daemon restarted"


def test_alerts_already_seen_are_not_announced_again_after_a_reconnect_or_restart():
    model = TrayModel()
    model.connected(hello())
    assert len(model.event("alert.firing", oom("b1-5"), "b1-5")) == 1
    model.disconnected()
    # the daemon restarted and restored the firing OOM alert with its id: the hello lists it, silently
    notes = model.connected(hello(boot="b2", alerts=[oom("b1-5")]))
    assert [n.summary for n in notes] == ["trayllm daemon restarted"]
    assert model.icon_state == "failing"
    # a replayed event (Last-Event-ID) the tray had already handled is silent too
    assert model.event("alert.firing", oom("b1-5"), "b1-5") == []
    # an alert that fired while the tray was away is announced from the hello
    notes = model.connected(hello(boot="b2", alerts=[oom("b1-5"), slo("slo.peak_vram", "firing", "b2-1")]))
    assert [n.key for n in notes] == ["slo.peak_vram"]


def test_a_storm_is_held_back_and_summarised():
    clock = Clock()
    model = TrayModel(storm_limit=3, storm_window_s=60, clock=clock)
    model.connected(hello())
    sent = []
    for i in range(10):
        sent += model.event("alert.firing", oom(f"b1-{i}", f"OOM #{i}"), f"b1-{i}")
        clock.now += 1
    assert [n.body for n in sent] == ["OOM #0", "OOM #1", "OOM #2"]
    assert model.tick() == []  # the window (60 s) is still full
    clock.now += 60
    [summary] = model.tick()
    assert summary.summary == "trayllm: 7 more alerts, 7 of them OOM" and summary.urgency == 2
    assert summary.key == "storm" and "GPU out of memory ×7" in summary.body
    assert model.tick() == []  # nothing more held
    # after the storm, single alerts flow again
    clock.now += 120
    assert len(model.event("alert.firing", slo("slo.peak_vram", "firing", "b1-99"), "b1-99")) == 1


def test_status_polls_fill_the_tooltip_and_correct_the_state():
    model = TrayModel()
    model.connected(hello())
    status = DaemonStatus.model_validate(
        {
            "state": "ready",
            "paused": "lunch",
            "model": {
                "name": "llama",
                "version": "v",
                "source": "s",
                "device": "cuda:0",
                "dtype": "bf16",
                "quantization": "none",
                "context_length": 8192,
            },
            "vram": {"used_bytes": 6 * 2**30, "total_bytes": 8 * 2**30},
            "queue": {
                "depth": 2,
                "capacity": 100,
                "in_flight": 1,
                "max_batch": 8,
                "backlog_cap_active": False,
                "backlog_max_tokens": 128,
            },
            "requests": {},
            "uptime_s": 5,
            "pid": 1,
            "version": "0.1.0",
            "slo": [
                {
                    "objective": "first_token_latency_p99",
                    "window_s": 3600,
                    "value": 0.214,
                    "threshold": 3,
                    "state": "ok",
                    "budget_left": 1,
                    "samples": 300,
                    "unit": "s",
                }
            ],
        }
    )
    model.status(status)
    tooltip = model.view().tooltip
    assert tooltip.splitlines() == [
        "trayllm: paused",
        "llama · ready · paused: lunch",
        "engine local: cuda:0 · bf16 · none",
        "VRAM 75% · P99 first token 0.21 s · queue 2/100",
    ]


def test_an_unreachable_remote_engine_is_a_state_and_a_critical_notice_of_its_own():
    model = TrayModel()
    model.connected(hello())
    remote = {"name": "qwen", "version": "Qwen/Qwen2.5-7B", "source": "s", "device": "remote", "dtype": "upstream"}
    remote |= {"quantization": "upstream", "context_length": 0, "engine": "gpu-box", "engine_url": "http://gpu:8000/v1"}
    queue = {"depth": 0, "capacity": 100, "in_flight": 0, "max_batch": 8}
    queue |= {"backlog_cap_active": False, "backlog_max_tokens": 128}
    model.status(
        DaemonStatus.model_validate(
            {"state": "ready", "model": remote, "queue": queue, "requests": {}, "uptime_s": 1, "pid": 1, "version": "0"}
        )
    )
    assert "engine gpu-box: Qwen/Qwen2.5-7B at http://gpu:8000/v1" in model.view().tooltip.splitlines()
    down = {"key": "engine.unreachable.gpu-box", "state": "firing", "severity": "critical", "message": "refused"}
    [note] = model.event("alert.firing", {**down, "id": "b1-5"}, "b1-5")
    assert (note.summary, note.urgency) == ("trayllm: engine gpu-box unreachable", 2)
    assert model.icon_state == "engine_down"
    model.event("alert.resolved", {**down, "state": "resolved", "id": "b1-6"}, "b1-6")
    assert model.icon_state == "healthy"


@pytest.mark.parametrize("kibana_url", ["", "http://127.0.0.1:5601"])
def test_open_dashboards_is_enabled_only_with_a_kibana_url(kibana_url: str):
    model = TrayModel(kibana_url=kibana_url)
    assert labels(model)["Open dashboards"] == (bool(kibana_url), None)


def test_the_model_submenu_lists_the_models_with_the_serving_one_checked_and_switchable_when_ready():
    from trayllm.model_catalog import CatalogEntry

    served = CatalogEntry("smollm2", "", "embedded", "/m.gguf", "gguf", 2**30, "Q4_1", 10, fits="fits", serving=True)
    other = CatalogEntry("acme/chat", "acme/chat", "hf-cache", "/snap", "hf", 3 * 2**30, "bf16", 10, fits="no")
    broken = CatalogEntry("/broken", "/broken", "configured", "/broken", problem="no weights")
    model = TrayModel()
    model.connected(hello())
    assert not any(item.label == "Model" for item in model.view().menu)  # nothing listed yet: no empty submenu
    model.catalog([served, other, broken])
    submenu = next(item for item in model.view().menu if item.label == "Model").submenu
    assert [(i.action, i.label, i.enabled, i.checked) for i in submenu] == [
        ("use:", "smollm2 · Q4_1 · 1.0 GiB · fits", False, True),
        ("use:acme/chat", "acme/chat · bf16 · 3.0 GiB · does not fit", True, False),
        ("use:/broken", "/broken · ? · unusable", False, False),
    ]
    model.event("model.reloading", {}, "b1-9")  # while a load runs, no switch can start
    submenu = next(item for item in model.view().menu if item.label == "Model").submenu
    assert not any(item.enabled for item in submenu)
