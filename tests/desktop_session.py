"""A throwaway desktop for tests that run the real tray process: Xvfb, a private session bus, a fake
StatusNotifierItem host and a recording notification server (tests/desktop/fake_*.py).

Tests under tests/desktop/ get the ``desktop_session`` fixture from tests/desktop/conftest.py;
elsewhere, ``from desktop_session import desktop_session`` in a conftest.py. Typical use::

    def test_tray(desktop_session):
        tray = desktop_session.popen([sys.executable, "-m", "trayllm.tray"])
        item = desktop_session.wait_for_sni_item()           # ":1.7/org/ayatana/NotificationItem/..."
        assert "Pause" in [e.label for e in desktop_session.menu_layout(item)]
        desktop_session.click(item, "Quit")
        assert tray.wait(10) == 0
        desktop_session.wait_for_notifications(1)[0]["urgency"]  # 2: critical

The fixture skips, naming the missing piece, only when Xvfb, dbus-daemon or PyGObject with the
GTK and AyatanaAppIndicator typelibs are not installed (`make test` installs them as root).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FAKES = Path(__file__).parent / "desktop"
WATCHER = "org.kde.StatusNotifierWatcher"
NOTIFICATIONS = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"
SCREEN = (1280, 800)

# A session bus with no service directories: nothing on this machine gets auto-started into it.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={socket_dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

_GI_PROBE = """
import gi
gi.require_version("Gtk", "3.0")
gi.require_version("AyatanaAppIndicator3", "0.1")
"""


@functools.cache
def missing_piece() -> str | None:
    """Why a desktop session cannot start here, or None when everything is installed."""
    for program, package in (("Xvfb", "xvfb"), ("dbus-daemon", "dbus")):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install {package}; `make test` does it as root)"
    for module, package in (
        ("dbus_next", "dbus-next"),
        ("jeepney", "jeepney"),
        ("pystray", "pystray"),
        ("Xlib", "python-xlib"),
        ("PIL", "pillow"),
    ):
        if importlib.util.find_spec(module) is None:
            return f"the Python package {package} is not installed in this venv (`make test` installs it)"
    if importlib.util.find_spec("gi") is None:
        return (
            "PyGObject (gi) is not installed in this venv: it builds after apt-get install libgirepository1.0-dev "
            "libcairo2-dev pkg-config (`make test` does both)"
        )
    probe = subprocess.run([sys.executable, "-c", _GI_PROBE], capture_output=True, text=True, timeout=60)
    if probe.returncode:
        error = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"{error} (apt-get install gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1; `make test` does it)"
    return None


@dataclass
class MenuEntry:
    """One com.canonical.dbusmenu item, with the dbusmenu defaults filled in."""

    id: int
    label: str  # as shown: mnemonic underscores removed
    enabled: bool
    visible: bool
    type: str  # "standard" or "separator"
    toggle_type: str  # "", "checkmark" or "radio"
    toggle_state: int  # 1 on, 0 off, -1 indeterminate
    properties: dict[str, Any]
    children: list[MenuEntry] = field(default_factory=list)

    @property
    def checked(self) -> bool:
        return self.toggle_state == 1


def _shown_label(label: str) -> str:
    return label.replace("__", "\0").replace("_", "").replace("\0", "_")


def _menu_entry(node: tuple[int, dict[str, tuple[str, Any]], list[tuple[str, Any]]]) -> MenuEntry:
    item_id, raw, children = node
    props = {name: value for name, (_signature, value) in raw.items()}
    return MenuEntry(
        id=item_id,
        label=_shown_label(props.get("label", "")),
        enabled=props.get("enabled", True),
        visible=props.get("visible", True),
        type=props.get("type", "standard"),
        toggle_type=props.get("toggle-type", ""),
        toggle_state=props.get("toggle-state", -1),
        properties=props,
        children=[_menu_entry(child) for _signature, child in children],
    )


def _split_item(item: str) -> tuple[str, str]:
    """KDE's "<bus name><object path>" item string, or a bare bus name, as (bus name, path)."""
    if "/" in item:
        name, path = item.split("/", 1)
        return name, "/" + path
    return item, "/StatusNotifierItem"


def _read_line(fd: int, timeout: float, what: str) -> str:
    """One line written to ``fd`` by a child starting up, within ``timeout`` seconds."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise RuntimeError(f"{what} printed nothing in {timeout} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError(f"{what} exited before printing its address")
        data += chunk
    return data.decode().strip()


@dataclass
class DesktopSession:
    """A running desktop: Xvfb on ``display``, a session bus at ``bus_address``, the two fakes.

    ``env`` is the whole environment for a child process (os.environ plus DISPLAY,
    DBUS_SESSION_BUS_ADDRESS, PYSTRAY_BACKEND=appindicator, GDK_BACKEND=x11, NO_AT_BRIDGE=1, ...).
    """

    dir: Path
    display: str
    bus_address: str
    env: dict[str, str]
    _stack: contextlib.ExitStack
    _connection: Any = None

    # --- processes -------------------------------------------------------------------------------
    def popen(self, args: Sequence[str], name: str | None = None, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a child in this session; its output goes to ``dir/<name>.log``; it is killed at the end."""
        name = name or _child_name(args)
        log = self._stack.enter_context(open(self.dir / f"{name}.log", "ab"))  # noqa: SIM115 (the stack closes it)
        kwargs.setdefault("env", self.env)
        kwargs.setdefault("stdout", log)
        kwargs.setdefault("stderr", subprocess.STDOUT)
        process = subprocess.Popen(list(args), **kwargs)
        self._stack.callback(_stop, process)
        return process

    def log(self, name: str) -> str:
        """What the child started as ``name`` (or Xvfb, dbus-daemon, fake_sni_watcher, fake_notifyd) wrote."""
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- D-Bus -----------------------------------------------------------------------------------
    def call(
        self,
        bus_name: str,
        path: str,
        interface: str,
        member: str,
        signature: str | None = None,
        *args: Any,
        timeout: float = 10.0,
    ) -> tuple[Any, ...]:
        """A blocking method call on the session bus (jeepney); D-Bus errors raise DBusErrorResponse."""
        from jeepney import DBusAddress, new_method_call
        from jeepney.io.blocking import open_dbus_connection
        from jeepney.wrappers import unwrap_msg

        if self._connection is None:
            self._connection = open_dbus_connection(self.bus_address)
            self._stack.callback(self._connection.close)
        message = new_method_call(DBusAddress(path, bus_name=bus_name, interface=interface), member, signature, args)
        return unwrap_msg(self._connection.send_and_get_reply(message, timeout=timeout))

    def get_property(self, bus_name: str, path: str, interface: str, name: str) -> Any:
        _signature, value = self.call(bus_name, path, "org.freedesktop.DBus.Properties", "Get", "ss", interface, name)[
            0
        ]
        return value

    def name_owner(self, name: str) -> str | None:
        if not self.call(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s", name
        )[0]:
            return None
        return self.call(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetNameOwner", "s", name
        )[0]

    # --- the tray host ---------------------------------------------------------------------------
    def sni_items(self) -> list[str]:
        """RegisteredStatusNotifierItems from the fake watcher, e.g. [":1.7/org/ayatana/NotificationItem/x"]."""
        return list(self.get_property(WATCHER, "/StatusNotifierWatcher", WATCHER, "RegisteredStatusNotifierItems"))

    def wait_for_sni_item(self, timeout: float = 20.0) -> str:
        """The first item to register with the fake watcher."""
        return _poll(lambda: next(iter(self.sni_items()), None), timeout, "no StatusNotifierItem registered", self.log)

    def registrations(self) -> list[dict[str, str]]:
        """Every RegisterStatusNotifierItem call: {"service", "sender", "item"}; libayatana repeats it on each
        set_menu, so expect the same item more than once."""
        return _read_jsonl(self.dir / "sni-registrations.jsonl")

    def item_property(self, item: str, name: str) -> Any:
        """A property of the org.kde.StatusNotifierItem itself: Id, Title, Status, IconName, Menu, ..."""
        bus_name, path = _split_item(item)
        return self.get_property(bus_name, path, "org.kde.StatusNotifierItem", name)

    def menu_layout(self, item: str) -> list[MenuEntry]:
        """The item's menu as its dbusmenu exports it (GetLayout from the root, all levels)."""
        bus_name, _path = _split_item(item)
        menu_path = self.item_property(item, "Menu")
        _revision, root = self.call(bus_name, menu_path, "com.canonical.dbusmenu", "GetLayout", "iias", 0, -1, [])
        return _menu_entry(root).children

    def click(self, item: str, label: str) -> MenuEntry:
        """Send dbusmenu Event(id, "clicked") for the entry shown as ``label``, as a tray host does.

        The tray rebuilds its menu on every status poll, which renumbers the entries: an id read just before
        a rebuild is refused ("does not refer to a menu item"), and, like a host after LayoutUpdated, the
        layout is read again and the click sent again.
        """
        from jeepney.wrappers import DBusErrorResponse

        bus_name, _path = _split_item(item)
        menu_path = self.item_property(item, "Menu")
        attempts = 5
        while True:
            entry = _find(self.menu_layout(item), label)
            if entry is None:
                labels = [e.label for e in _walk(self.menu_layout(item))]
                raise AssertionError(f"no menu entry {label!r} in {labels}")
            try:
                self.call(
                    bus_name,
                    menu_path,
                    "com.canonical.dbusmenu",
                    "Event",
                    "isvu",
                    entry.id,
                    "clicked",
                    ("s", ""),
                    int(time.time()) & 0xFFFFFFFF,
                )
                return entry
            except DBusErrorResponse as exc:
                attempts -= 1
                if "does not refer to a menu item" not in str(exc) or not attempts:
                    raise

    # --- notifications ---------------------------------------------------------------------------
    def notifications(self) -> list[dict[str, Any]]:
        """Every Notify call so far: id, app_name, replaces_id, app_icon, summary, body, actions, hints,
        urgency (0 low, 1 normal, 2 critical, None when not sent) and expire_timeout."""
        return _read_jsonl(self.dir / "notifications.jsonl")

    def wait_for_notifications(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """All Notify calls, once there are at least ``count``."""

        def enough() -> list[dict[str, Any]] | None:
            recorded = self.notifications()
            return recorded if len(recorded) >= count else None

        return _poll(enough, timeout, f"fewer than {count} Notify calls", self.log)

    def invoke_action(self, notification_id: int, action_key: str = "default") -> None:
        """Play the user clicking a notification's action: the server emits ActionInvoked."""
        self.call(
            NOTIFICATIONS,
            NOTIFICATIONS_PATH,
            "org.trayllm.test.FakeNotifications",
            "InvokeAction",
            "us",
            notification_id,
            action_key,
        )

    def dismiss(self, notification_id: int, reason: int = 2) -> None:
        """Play the user closing a notification: NotificationClosed(id, reason)."""
        self.call(
            NOTIFICATIONS,
            NOTIFICATIONS_PATH,
            "org.trayllm.test.FakeNotifications",
            "Close",
            "uu",
            notification_id,
            reason,
        )

    # --- pixels ----------------------------------------------------------------------------------
    def screenshot(self, path: str | os.PathLike[str]) -> Path:
        """The whole Xvfb screen as a PNG (python-xlib + Pillow; no ImageMagick needed)."""
        from PIL import Image
        from Xlib import X
        from Xlib.display import Display

        display = Display(self.display)
        try:
            root = display.screen().root
            geometry = root.get_geometry()
            raw = root.get_image(0, 0, geometry.width, geometry.height, X.ZPixmap, 0xFFFFFFFF)
        finally:
            display.close()
        path = Path(path)
        Image.frombytes("RGB", (geometry.width, geometry.height), raw.data, "raw", "BGRX").save(path)
        return path


def _child_name(args: Sequence[str]) -> str:
    """ "tray_app" for [python, .../tray_app.py, ...], "trayllm.tray" for [python, -m, trayllm.tray]."""
    if Path(args[0]).name.startswith("python") and len(args) > 1:
        return args[2] if args[1] == "-m" and len(args) > 2 else Path(args[1]).stem
    return Path(args[0]).stem


def _find(entries: list[MenuEntry], label: str) -> MenuEntry | None:
    return next((e for e in _walk(entries) if e.label == label), None)


def _walk(entries: list[MenuEntry]) -> Iterator[MenuEntry]:
    for entry in entries:
        yield entry
        yield from _walk(entry.children)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.endswith("}")]


def _poll(predicate: Any, timeout: float, failure: str, log: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = {name: log(name)[-2000:] for name in ("fake_sni_watcher", "fake_notifyd")}
            raise AssertionError(f"{failure} after {timeout} s; fake service logs: {logs}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[Any], grace: float = 5.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def start_desktop_session(directory: Path, *, fakes: bool = True) -> Iterator[DesktopSession]:
    """Xvfb, a private session bus and (with ``fakes``) the two recording fakes, all stopped on exit; logs stay
    in ``directory``. Without the fakes, a caller can start a real tray host and notification daemon instead
    (scripts/tray_screenshot.py does, to draw them)."""
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:

        def started(args: list[str], name: str, **kwargs: Any) -> subprocess.Popen[bytes]:
            log = stack.enter_context(open(directory / f"{name}.log", "ab"))
            process = subprocess.Popen(args, stdout=kwargs.pop("stdout", log), stderr=log, **kwargs)
            stack.callback(_stop, process)
            return process

        # Xvfb picks a free display itself and writes its number to -displayfd.
        read_fd, write_fd = os.pipe()
        try:
            started(
                [
                    "Xvfb",
                    "-displayfd",
                    str(write_fd),
                    "-screen",
                    "0",
                    f"{SCREEN[0]}x{SCREEN[1]}x24",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ],
                "Xvfb",
                pass_fds=(write_fd,),
            )
            os.close(write_fd)
            display = ":" + _read_line(read_fd, 20, "Xvfb")
        finally:
            os.close(read_fd)
            with contextlib.suppress(OSError):
                os.close(write_fd)

        socket_dir = tempfile.mkdtemp(prefix="trayllm-bus-")  # short: unix socket paths max out at 107 bytes
        stack.callback(shutil.rmtree, socket_dir, True)
        config = directory / "session-bus.conf"
        config.write_text(BUS_CONFIG.format(socket_dir=socket_dir))
        bus = started(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
            "dbus-daemon",
            stdout=subprocess.PIPE,
        )
        assert bus.stdout is not None
        try:
            address = _read_line(bus.stdout.fileno(), 20, "dbus-daemon")
        finally:
            bus.stdout.close()

        env = {name: value for name, value in os.environ.items() if name not in ("WAYLAND_DISPLAY",)}
        env.update(
            DISPLAY=display,
            DBUS_SESSION_BUS_ADDRESS=address,
            PYSTRAY_BACKEND="appindicator",
            GDK_BACKEND="x11",
            NO_AT_BRIDGE="1",
            GSETTINGS_BACKEND="memory",
            PYTHONUNBUFFERED="1",
        )
        session = DesktopSession(dir=directory, display=display, bus_address=address, env=env, _stack=stack)
        services = (
            {}
            if not fakes
            else {
                WATCHER: started(
                    [sys.executable, str(FAKES / "fake_sni_watcher.py"), str(directory / "sni-registrations.jsonl")],
                    "fake_sni_watcher",
                    env=env,
                ),
                NOTIFICATIONS: started(
                    [sys.executable, str(FAKES / "fake_notifyd.py"), str(directory / "notifications.jsonl")],
                    "fake_notifyd",
                    env=env,
                ),
            }
        )
        deadline = time.monotonic() + 30
        for name, process in services.items():
            while session.name_owner(name) is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = session.log("fake_sni_watcher" if name == WATCHER else "fake_notifyd")
                    raise RuntimeError(f"{name} did not come up on the session bus: {log[-2000:]}")
                time.sleep(0.05)
        yield session


@pytest.fixture
def desktop_session(tmp_path: Path) -> Iterator[DesktopSession]:
    """A fresh DesktopSession per test (about 0.5 s to start); skips when Xvfb/dbus/gi are missing."""
    reason = missing_piece()
    if reason:
        pytest.skip(reason)
    with start_desktop_session(tmp_path / "desktop") as session:
        yield session
