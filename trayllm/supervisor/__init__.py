"""Supervising trayllm's processes: the daemon, the tray and the chat windows, started, waited for and stopped.

- ``runners``: how a process is started (a detached child, a systemd user unit) and the handle that says
  whether it still runs and why it is gone;
- ``daemon``: ``DaemonSupervisor``, the one start path for `trayllm up`, the tray and the chat window,
  with wait-ready, stop and restart;
- ``clients``: launching the tray or a chat window and waiting until it is up; `trayllm down`;
- ``instances``: the pid-file locks by which the running tray and chat windows are found.
"""
