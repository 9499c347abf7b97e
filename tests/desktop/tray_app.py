"""A minimal pystray tray icon for test_harness.py (run as a script under a desktop_session env).

Menu: "Open chat" (sends a notification through pystray), "Pause" (checkable), "Quit". Every
action appends one line to the events file given as the only argument, so the test can observe it.

    python tray_app.py events.txt
"""

from __future__ import annotations

import sys

import pystray
from PIL import Image, ImageDraw


def main(events_path: str) -> None:
    paused = False

    def event(line: str) -> None:
        with open(events_path, "a", encoding="utf-8") as events:
            events.write(line + "\n")

    def open_chat(icon: pystray.Icon, _item: pystray.MenuItem) -> None:
        event("open-chat")
        icon.notify("The chat window would open now", "trayllm test")

    def toggle_pause(_icon: pystray.Icon, _item: pystray.MenuItem) -> None:
        nonlocal paused
        paused = not paused
        event(f"paused={paused}")

    def quit_(icon: pystray.Icon, _item: pystray.MenuItem) -> None:
        event("quit")
        icon.stop()

    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((4, 4, 60, 60), fill=(200, 40, 40, 255))
    menu = pystray.Menu(
        pystray.MenuItem("Open chat", open_chat),
        pystray.MenuItem("Pause", toggle_pause, checked=lambda _item: paused),
        pystray.Menu.SEPARATOR,
        pystray.MenuItem("Quit", quit_),
    )
    icon = pystray.Icon("trayllm_test", image, "trayllm test", menu)

    def setup(icon: pystray.Icon) -> None:
        icon.visible = True
        event(f"ready backend={type(icon).__module__}")

    icon.run(setup=setup)
    event("stopped")


if __name__ == "__main__":
    main(sys.argv[1])
