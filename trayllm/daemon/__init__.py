"""The daemon: HTTP over a Unix socket (and optional loopback TCP) in front of the engine."""
