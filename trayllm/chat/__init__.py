"""Chat front ends: the terminal REPL now, the Qt window later."""
