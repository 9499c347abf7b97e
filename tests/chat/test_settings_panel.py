"""The settings panel's rule, without Qt: a spin box at its minimum stands for the daemon's default (None)."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from trayllm.chat.settings_panel import chosen_setting, spin_value  # noqa: E402 (after the skip)


def test_a_default_setting_shows_as_the_minimum_and_reads_back_as_none() -> None:
    assert spin_value(None, -0.1) == -0.1
    assert chosen_setting(spin_value(None, -0.1), -0.1) is None


def test_a_set_value_round_trips_including_zero() -> None:
    assert spin_value(0.0, -0.1) == 0.0  # temperature 0 (greedy) is a value, not the default
    assert chosen_setting(0.0, -0.1) == 0.0
    assert chosen_setting(700, 0) == 700 and chosen_setting(0, 0) is None
