"""The desktop_session fixture (tests/desktop_session.py) for every test in this directory."""

from desktop_session import desktop_session  # noqa: F401
