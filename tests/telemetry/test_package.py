"""The telemetry package stays light: no torch, no HTTP stack, and every module says why it exists."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import trayllm.telemetry

MODULES = sorted(f"trayllm.telemetry.{m.name}" for m in pkgutil.iter_modules(trayllm.telemetry.__path__))


def test_modules_import_neither_torch_nor_an_http_stack():
    assert {
        "trayllm.telemetry.schema",
        "trayllm.telemetry.record",
        "trayllm.telemetry.writer",
        "trayllm.telemetry.reader",
        "trayllm.telemetry.metrics",
        "trayllm.telemetry.vram",
    } <= set(MODULES)
    code = (
        f"import sys\nfor name in {MODULES!r}:\n    __import__(name)\n"
        "from trayllm.telemetry.vram import NvmlProbe; NvmlProbe()\n"
        "import json; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'numpy', 'httpx', 'fastapi', 'uvicorn', 'starlette', 'requests'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == []


def test_every_module_has_a_docstring():
    assert trayllm.telemetry.__doc__ and "\n" not in trayllm.telemetry.__doc__.strip()
    for name in MODULES:
        assert (importlib.import_module(name).__doc__ or "").strip(), name
