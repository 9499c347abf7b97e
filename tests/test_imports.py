"""Clients never import torch: a fresh interpreter imports every client module and checks sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys

CLIENT_MODULES = (
    "trayllm.client",
    "trayllm.cli",
    "trayllm.cli.pull",
    "trayllm.bench.load",
    "trayllm.bench.report",
    "trayllm.chat.terminal",
    "trayllm.tray.app",
    "trayllm.tray.model",
    "trayllm.tray.notify",
    "trayllm.supervisor.runners",
    "trayllm.supervisor.daemon",
    "trayllm.supervisor.clients",
    "trayllm.supervisor.instances",
    "trayllm.elastic.shipper",
    "trayllm.elastic.kibana",
    "trayllm.doctor.gpus",
    "trayllm.doctor.report",
    "trayllm.config_edit",
    "trayllm.desktop.install",
    "trayllm.chat.app",
    "trayllm.engine.interface",
    "trayllm.daemon.chat",
)


def test_client_modules_do_not_import_torch_or_transformers():
    code = (
        f"import sys\nfor name in {CLIENT_MODULES!r}:\n    __import__(name)\n"
        "import json; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'numpy', 'fastapi', 'uvicorn'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == []
