"""The daemon's app on a fake engine, served in the test process (tests/inprocess_daemon.py): for the tests of
its HTTP behaviour, which need neither the model nor a daemon process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from inprocess_daemon import InProcessDaemon, serve_fake


@pytest.fixture
def start_fake_engine_daemon() -> Iterator[Callable[..., InProcessDaemon]]:
    """Factory for an in-process daemon with chosen settings, stopped at the end of the test; one per test, as
    they would share the test's XDG dirs (socket and records)."""
    with contextlib.ExitStack() as stack:
        yield lambda **settings: stack.enter_context(serve_fake(**settings))


@pytest.fixture
def fake_engine_daemon(start_fake_engine_daemon: Callable[..., InProcessDaemon]) -> InProcessDaemon:
    """One in-process daemon with the default settings."""
    return start_fake_engine_daemon()
