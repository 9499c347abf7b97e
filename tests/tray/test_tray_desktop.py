"""Issue 6, acceptance 2: the real `trayllm tray` process against a real daemon, under Xvfb with a session bus,
a StatusNotifierItem host and a notification recorder (tests/desktop_session.py; installed by `make test`)."""

from __future__ import annotations

import sys

import pytest
from desktop_session import DesktopSession
from waiting import wait_for

from trayllm import errors
from trayllm.client import DaemonClient
from trayllm.config import Settings
from trayllm.supervisor import instances

pytestmark = pytest.mark.slow


def labels(session: DesktopSession, item: str) -> dict[str, tuple[bool, bool]]:
    return {e.label: (e.enabled, e.checked) for e in session.menu_layout(item) if e.type != "separator"}


def test_the_tray_shows_the_daemon_pauses_it_and_turns_an_oom_into_a_critical_notification(
    desktop_session: DesktopSession, start_daemon
) -> None:
    daemon = start_daemon(fault_injection=True)
    env = {**desktop_session.env, **{k: v for k, v in daemon.env.items() if k.startswith(("XDG_", "TRAYLLM_"))}}
    env["QT_QPA_PLATFORM"] = "offscreen"  # for the chat window "Open chat" starts: Qt's xcb needs more libraries
    tray = desktop_session.popen([sys.executable, "-m", "trayllm", "tray"], name="tray", env=env)
    item = desktop_session.wait_for_sni_item()
    assert desktop_session.item_property(item, "Id") == "trayllm"

    # the menu, read over D-Bus (dbusmenu), once the tray has heard from the daemon
    menu = wait_for(lambda: (m := labels(desktop_session, item)).get("Pause serving", (False,))[0] and m, timeout=30)
    assert menu["Open chat"] == (True, False)
    assert menu["Pause serving"] == (True, False) and menu["Reload model"] == (True, False)
    assert menu["Open dashboards"] == (False, False)  # no kibana_url configured
    assert any(label.startswith("smollm2-135m-instruct · ready") for label in menu)
    assert "Quit" in menu and "Start daemon" not in menu

    # activating "Pause serving" pauses the daemon, and the menu shows it checked
    desktop_session.click(item, "Pause serving")
    wait_for(lambda: daemon.status()["paused"] == "paused from the tray", timeout=15)
    wait_for(lambda: labels(desktop_session, item)["Pause serving"] == (True, True), timeout=15)
    desktop_session.click(item, "Pause serving")  # and again: resumes
    wait_for(lambda: daemon.status()["paused"] is None, timeout=15)

    # "Open chat" opens the chat window (a Qt process holding its instance lock), not a terminal
    desktop_session.click(item, "Open chat")
    windows = wait_for(lambda: instances.running(Settings(socket=str(daemon.socket)), "chat"), timeout=60)
    assert len(windows) == 1
    instances.stop(Settings(socket=str(daemon.socket)), windows)

    # an injected OOM becomes one Notify call with critical urgency
    with DaemonClient(socket_path=daemon.socket) as client:
        client.set_faults(oom_at="prefill")
        with pytest.raises(errors.EngineOutOfMemory):
            client.chat({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    critical = wait_for(lambda: [n for n in desktop_session.notifications() if n["urgency"] == 2], timeout=15)
    [oom] = critical
    assert oom["summary"] == "trayllm: GPU out of memory" and "out of memory" in oom["body"]
    assert oom["app_name"] == "trayllm" and oom["expire_timeout"] == 0  # stays until dismissed

    # the daemon goes away: the tray says so and offers to start it
    assert daemon.stop() == 0
    down = wait_for(
        lambda: [n for n in desktop_session.notifications() if n["summary"] == "trayllm daemon is down"], timeout=20
    )
    assert len(down) == 1
    wait_for(lambda: "Start daemon" in labels(desktop_session, item), timeout=15)

    desktop_session.click(item, "Quit")
    assert tray.wait(15) == 0


def test_the_model_submenu_switches_the_daemon_and_the_next_record_names_the_new_version(
    desktop_session: DesktopSession, start_daemon, converted_model_dir
) -> None:
    import json

    from trayllm.model_catalog import EMBEDDED_NAME

    # serving the converted copy as a configured directory; the embedded GGUF is the other model listed
    daemon = start_daemon(model=str(converted_model_dir), quantization="none")
    before = daemon.status()["model"]["version"]
    env = {**desktop_session.env, **{k: v for k, v in daemon.env.items() if k.startswith(("XDG_", "TRAYLLM_", "HF_"))}}
    env["HF_HUB_CACHE"] = str(daemon.socket.parents[2] / "hub")  # no hub cache: two models listed
    tray = desktop_session.popen([sys.executable, "-m", "trayllm", "tray"], name="tray", env=env)
    item = desktop_session.wait_for_sni_item()

    def model_menu() -> dict[str, tuple[bool, bool]]:
        entry = next((e for e in desktop_session.menu_layout(item) if e.label == "Model"), None)
        return {} if entry is None else {child.label: (child.enabled, child.checked) for child in entry.children}

    menu = wait_for(lambda: len(m := model_menu()) == 2 and m, timeout=30)
    [(serving, state)] = [(label, s) for label, s in menu.items() if label.startswith(f"{converted_model_dir} ")]
    [embedded] = [label for label in menu if label.startswith(f"{EMBEDDED_NAME} · Q4_1")]
    assert state == (False, True) and menu[embedded] == (True, False)  # the serving one checked, the other choosable

    desktop_session.click(item, embedded)
    status = wait_for(  # a load on this machine's shared cores: seconds to a minute
        lambda: (s := daemon.status())["state"] == "ready" and s["model"]["version"] != before and s, timeout=90
    )
    assert status["model"]["source"].endswith(".gguf")
    config = daemon.socket.parents[2] / "xdg_config_home" / "trayllm" / "config.toml"
    wait_for(lambda: config.is_file() and 'model = ""' in config.read_text().splitlines(), timeout=15)
    with daemon.client() as client:
        reply = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        )
    assert reply.status_code == 200
    # the record is written once the reply has ended, which can be after the client has read it
    lines = wait_for(lambda: daemon.records.is_file() and daemon.records.read_text().splitlines(), timeout=15)
    assert json.loads(lines[-1])["llm"]["model"]["version"] == status["model"]["version"]
    wait_for(lambda: model_menu().get(embedded) == (False, True), timeout=30)  # now checked in the menu

    desktop_session.click(item, "Quit")
    assert tray.wait(15) == 0
