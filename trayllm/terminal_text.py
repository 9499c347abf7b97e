"""Text from the daemon or the model, made safe to print on a terminal.

A terminal obeys control characters: ESC starts sequences that set the window title (OSC), move the
cursor and rewrite what is on screen (CSI), or, on some terminals, write files or answer back into the
shell's input (DCS and friends); a carriage return lets a line overwrite the one shown before it. A
pause reason, an alert, an error message or a reply is written by whoever sent a request or by the
model, so none of it may reach the terminal raw.

Each C0 control character (except newline and tab, which text legitimately has), DEL and each C1
control character is shown as its escape, ``\\x1b``, instead. That works one character at a time, so a
reply streamed in pieces is safe whichever way a sequence is split across them: without its ESC (or
C1 introducer) the rest of a sequence is plain printable text. Everything else passes unchanged.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 less tab and newline, DEL, C1
_LINE_BREAKS = re.compile(r"\r\n|[\n\t\v\f\r\x1c-\x1e\x85\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def for_terminal(text: str) -> str:
    """``text`` with every control character but newline and tab shown as its escape (``\\x1b``)."""
    return _CONTROL.sub(_escape, text)


def one_line(text: str) -> str:
    """``text`` for one line of a terminal: each line break or tab becomes a space, other controls escapes.

    For fields shown in columns (`trayllm status`, `trayllm events`), where a newline in a value would forge
    a row of its own.
    """
    return for_terminal(_LINE_BREAKS.sub(" ", text))
