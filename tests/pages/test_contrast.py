"""Text colours of the pages against the backgrounds they sit on: WCAG AA (4.5:1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BASE = (Path(__file__).parents[2] / "api" / "web" / "templates" / "base.html").read_text()
COLOURS = dict(re.findall(r"--(\w+):(#[0-9a-fA-F]{6})", BASE))
BACKGROUNDS = {"white": "#ffffff", "page": "#f5f7fa", "table header": "#eef2f7"}


def _luminance(hex_colour: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_palette_is_what_the_pages_use() -> None:
    assert {"ink", "muted", "accent", "ok", "warn", "bad"} <= COLOURS.keys()


@pytest.mark.parametrize("name", ["ink", "muted", "accent", "ok", "warn", "bad"])
@pytest.mark.parametrize("background", sorted(BACKGROUNDS))
def test_text_colours_are_readable(name: str, background: str) -> None:
    ratio = contrast(COLOURS[name], BACKGROUNDS[background])
    assert ratio >= 4.5, f"--{name} on {background}: {ratio:.2f}:1"


def test_a_known_pair() -> None:
    # The orange the pages once used for 作業中 and 要注意, below AA on white.
    assert round(contrast("#b36b00", "#ffffff"), 2) == 4.18
