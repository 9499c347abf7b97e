"""The launcher icon: the tray's "healthy" disc and light ring with a speech bubble on it, as SVG and as PNGs.

One list of shapes in the tray icon's 64-unit grid (trayllm/tray/icons.py draws the disc inset by 4 with a
4-wide light ring) renders to both formats, so the scalable and the fixed-size icons cannot drift apart.
Shapes are painted in order, each over the ones before it (SVG's painter's model, composited the same way for
the PNGs). The PNGs are drawn once at 1024 px and box-filtered down: every pixel is the covered share of its
area, so edges are smooth at 16 px and the output is the same on every run.

Drawing needs Pillow (the ``gui`` extra), which ``trayllm desktop install`` must not: a base install has to be
able to put the launcher entry in place. So the PNGs are drawn ahead of time by scripts/build_packaging.py into
``trayllm/desktop/icons/`` (package data; the script rewrites one only when its pixels change), and install
copies those files (``packaged_png``). The SVG is text and is rendered at install time.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from trayllm.errors import TrayllmError
from trayllm.tray.icons import COLOURS, SIZE

# The XML namespace SVG renderers require on the root element: an identifier, never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
PNG_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
SUPERSAMPLED_PX = 1024
# The drawn PNGs, shipped inside the package (pyproject.toml's package-data for trayllm.desktop).
PACKAGED_DIR = "icons"

Colour = tuple[int, int, int, int]
GREEN: Colour = (*COLOURS["healthy"], 255)
WHITE: Colour = (255, 255, 255, 255)
RING: Colour = (255, 255, 255, 230)  # the tray icon's ring colour


def _svg_paint(colour: Colour, attribute: str) -> str:
    """``fill="#rrggbb"`` (or stroke), with an opacity attribute when the colour is not opaque."""
    red, green, blue, alpha = colour
    paint = f'{attribute}="#{red:02x}{green:02x}{blue:02x}"'
    return paint + (f' {attribute}-opacity="{alpha / 255:.3g}"' if alpha < 255 else "")


@dataclass(frozen=True)
class Circle:
    """A disc, or with ``ring_width`` a ring of that width centred on radius ``r``."""

    cx: float
    cy: float
    r: float
    colour: Colour
    ring_width: float = 0

    def svg(self) -> str:
        paint = (
            f'fill="none" {_svg_paint(self.colour, "stroke")} stroke-width="{self.ring_width:g}"'
            if self.ring_width
            else _svg_paint(self.colour, "fill")
        )
        return f'<circle cx="{self.cx:g}" cy="{self.cy:g}" r="{self.r:g}" {paint}/>'

    def draw(self, draw: Any, scale: float) -> None:
        outer = self.r + self.ring_width / 2
        box = _pixel_box(self.cx - outer, self.cy - outer, self.cx + outer, self.cy + outer, scale)
        if self.ring_width:
            draw.ellipse(box, outline=self.colour, width=round(self.ring_width * scale))
        else:
            draw.ellipse(box, fill=self.colour)


@dataclass(frozen=True)
class RoundedRect:
    x: float
    y: float
    width: float
    height: float
    radius: float
    colour: Colour

    def svg(self) -> str:
        return (
            f'<rect x="{self.x:g}" y="{self.y:g}" width="{self.width:g}" height="{self.height:g}" '
            f'rx="{self.radius:g}" {_svg_paint(self.colour, "fill")}/>'
        )

    def draw(self, draw: Any, scale: float) -> None:
        box = _pixel_box(self.x, self.y, self.x + self.width, self.y + self.height, scale)
        draw.rounded_rectangle(box, radius=self.radius * scale, fill=self.colour)


@dataclass(frozen=True)
class Polygon:
    points: tuple[tuple[float, float], ...]
    colour: Colour

    def svg(self) -> str:
        points = " ".join(f"{x:g},{y:g}" for x, y in self.points)
        return f'<polygon points="{points}" {_svg_paint(self.colour, "fill")}/>'

    def draw(self, draw: Any, scale: float) -> None:
        draw.polygon([(x * scale, y * scale) for x, y in self.points], fill=self.colour)


def _pixel_box(left: float, top: float, right: float, bottom: float, scale: float) -> tuple[float, ...]:
    """Pillow's boxes include their last pixel; a shape covering [left, right) ends one pixel before right."""
    return (left * scale, top * scale, right * scale - 1, bottom * scale - 1)


SHAPES: Sequence[Circle | RoundedRect | Polygon] = (
    Circle(32, 32, 28, GREEN),  # the tray icon's disc...
    Circle(32, 32, 26, RING, ring_width=4),  # ...and its light ring
    RoundedRect(17, 19, 30, 20, 6, WHITE),  # a speech bubble
    Polygon(((22, 37), (20, 46), (31, 39)), WHITE),  # its tail
    *(Circle(x, 29, 2.5, GREEN) for x in (25, 32, 39)),  # "typing" dots
)


def icon_svg() -> str:
    """The scalable icon (hicolor/scalable/apps/trayllm.svg)."""
    body = "\n".join(f"  {shape.svg()}" for shape in SHAPES)
    return f'<svg xmlns="{SVG_NAMESPACE}" width="{SIZE}" height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}">\n{body}\n</svg>\n'


@functools.cache
def _supersampled() -> Any:
    """The icon at SUPERSAMPLED_PX, each shape drawn on its own layer and composited over the ones before."""
    from PIL import Image, ImageDraw

    scale = SUPERSAMPLED_PX / SIZE
    image = Image.new("RGBA", (SUPERSAMPLED_PX, SUPERSAMPLED_PX), (0, 0, 0, 0))
    for shape in SHAPES:
        layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
        shape.draw(ImageDraw.Draw(layer), scale)
        image = Image.alpha_composite(image, layer)
    return image


def icon_image(size: int) -> Any:
    """The icon as a ``size`` x ``size`` RGBA Pillow image."""
    from PIL import Image

    return _supersampled().resize((size, size), Image.Resampling.BOX)


def draw_png(size: int) -> bytes:
    """The icon drawn now, as PNG bytes (needs Pillow; what the packaged PNGs are made from)."""
    buffer = io.BytesIO()
    icon_image(size).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def same_pixels(png: bytes, other: bytes) -> bool:
    """Whether two PNGs hold the same pixels (needs Pillow). Encoders may compress the same pixels differently,
    so the generator compares this rather than bytes, and leaves a committed PNG alone when it holds."""
    from PIL import Image, ImageChops

    first, second = Image.open(io.BytesIO(png)), Image.open(io.BytesIO(other))
    return (first.mode, first.size) == (second.mode, second.size) and ImageChops.difference(
        first, second
    ).getbbox() is None


def packaged_png_name(size: int) -> str:
    """The file name of the ``size`` px PNG inside ``trayllm/desktop/icons/``."""
    return f"trayllm-{size}.png"


def packaged_png(size: int) -> bytes:
    """The icon as PNG bytes (hicolor/NxN/apps/trayllm.png), from the package data: no Pillow needed."""
    name = packaged_png_name(size)
    try:
        return (resources.files("trayllm.desktop") / PACKAGED_DIR / name).read_bytes()
    except OSError as exc:
        raise TrayllmError(
            f"this trayllm installation lacks its icon {PACKAGED_DIR}/{name} ({exc.strerror or exc}); reinstall trayllm"
        ) from None
