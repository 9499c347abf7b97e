"""Take docs/tray.png: the real tray icon beside a real OOM notification, on a throwaway Xvfb desktop.

    .venv/bin/python scripts/tray_screenshot.py [docs/tray.png]

It starts Xvfb and a private session bus, an XEmbed tray host (trayer) and a notification daemon that draws
(dunst), a real daemon with fault injection and `trayllm tray`. Then it injects one CUDA OOM and saves the
screen, cropped to the top of it, where the tray and the notification are. It needs
`apt-get install trayer dunst` on top of what `make test` installs; it is a docs tool, not part of CI.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from daemons import spawn_daemon  # noqa: E402  (test helpers: a real daemon process on the shared model cache)
from desktop_session import start_desktop_session  # noqa: E402

from trayllm import errors  # noqa: E402
from trayllm.client import DaemonClient  # noqa: E402

CROP = (560, 0, 1280, 260)  # the top right of the 1280x800 screen: the tray and dunst's notifications


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "tray.png")
    missing = [tool for tool in ("trayer", "dunst") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"tray_screenshot: needs {' and '.join(missing)}: apt-get install -y {' '.join(missing)}")
    with (
        tempfile.TemporaryDirectory(prefix="trayllm-shot-") as tmp,
        start_desktop_session(Path(tmp) / "session", fakes=False) as session,
    ):
        session.popen(
            [
                "trayer",
                "--edge",
                "top",
                "--align",
                "right",
                "--widthtype",
                "pixel",
                "--width",
                "120",
                "--height",
                "36",
                "--SetDockType",
                "true",
                "--transparent",
                "false",
                "--tint",
                "0x303030",
            ]
        )
        dunst_rc = Path(tmp) / "dunstrc"
        dunst_rc.write_text(
            "[global]\n  origin = top-right\n  offset = 10x46\n  width = 420\n  font = DejaVu Sans 10\n"
            '  frame_width = 2\n[urgency_critical]\n  background = "#3b0d0d"\n'
            '  foreground = "#ffffff"\n  frame_color = "#cf222e"\n  timeout = 0\n'
        )
        session.popen(["dunst", "-config", str(dunst_rc)])
        daemon = spawn_daemon(Path(tmp) / "daemon", fault_injection=True)
        try:
            env = {
                **session.env,
                **{k: v for k, v in daemon.env.items() if k.startswith(("XDG_", "TRAYLLM_"))},
                "PYSTRAY_BACKEND": "appindicator",
            }
            session.popen([sys.executable, "-m", "trayllm", "tray"], name="tray", env=env)
            time.sleep(4)  # the icon docks and the tray connects to the daemon
            with DaemonClient(socket_path=daemon.socket) as client:
                client.set_faults(oom_at="prefill")
                with contextlib.suppress(errors.EngineOutOfMemory):  # the 503 is expected: it is the point
                    client.chat({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            time.sleep(3)  # the notification is drawn
            full = session.screenshot(Path(tmp) / "full.png")
            from PIL import Image

            Image.open(full).crop(CROP).save(out)
        finally:
            daemon.stop()
    print(f"saved {out}")


if __name__ == "__main__":
    main()
