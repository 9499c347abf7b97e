"""docs/SECURITY.md's limits table says what the settings table says."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from trayllm.config import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "SECURITY.md"
ROW = re.compile(r"^\| `([a-z_0-9]+)` \| ([^|]+) \|", re.MULTILINE)
# Every limit a hostile client meets: the socket and scheduler groups, and these.
ALSO_LIMITS = {"default_max_tokens", "records_max_bytes", "records_backups", "events_buffer"}
NOT_LIMITS = {"socket", "listen", "token_file", "shutdown_grace_s"}


def test_every_limit_is_in_the_table_with_its_default() -> None:
    documented = dict(ROW.findall(DOC.read_text(encoding="utf-8")))
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    limits = {name for name, f in fields.items() if f.metadata.get("group") in ("sockets", "scheduler")}
    assert (limits | ALSO_LIMITS) - NOT_LIMITS == documented.keys()
    for name, shown in documented.items():
        assert shown.strip() == str(fields[name].default), f"docs/SECURITY.md shows {name} = {shown.strip()}"
