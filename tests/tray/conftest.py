from desktop_session import desktop_session  # noqa: F401  (the Xvfb + session-bus fixture)
