"""Chat front ends: the PySide6 window (with its conversation store and exports) and the terminal REPL."""
