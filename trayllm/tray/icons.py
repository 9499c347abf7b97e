"""The tray icon's pictures: one colour per state, drawn with Pillow at run time (no image files to ship)."""

from __future__ import annotations

from typing import Any

from trayllm.tray.model import IconState

COLOURS: dict[IconState, tuple[int, int, int]] = {
    "healthy": (46, 160, 67),  # green
    "degraded": (230, 160, 20),  # amber: an SLO is firing
    "failing": (207, 34, 46),  # red: OOM, error budget burning, model failed
    "paused": (84, 110, 200),  # blue: the user paused serving
    "starting": (120, 180, 230),  # light blue: loading
    "unreachable": (140, 140, 140),  # grey: no daemon
    "engine_down": (150, 60, 160),  # purple: the daemon is up, the remote engine it serves through is not
}
SIZE = 64


def icon_image(state: IconState) -> Any:
    """A 64x64 RGBA image: a filled disc in the state's colour with a light ring, and a pause bar when paused."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 4, SIZE - 5, SIZE - 5), fill=COLOURS[state] + (255,), outline=(255, 255, 255, 230), width=4)
    if state == "paused":
        for x in (22, 36):
            draw.rectangle((x, 20, x + 6, 44), fill=(255, 255, 255, 255))
    elif state in ("unreachable", "engine_down"):
        draw.line((20, 20, 44, 44), fill=(255, 255, 255, 255), width=6)
    return image
