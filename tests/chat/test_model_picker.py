"""The chat window's model picker (offscreen, pytest-qt) against the daemon's real app on a fake engine: it lists
the models here with the serving one selected, and picking another switches the daemon and saves the choice."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest
from fake_engine import FAKE_INFO
from inprocess_daemon import serve_fake

from trayllm.chat.store import ConversationStore
from trayllm.chat.window import ChatWindow
from trayllm.config import config_file
from trayllm.model_catalog import EMBEDDED_NAME, embedded_gguf


def hf_dir(path: Path) -> Path:
    """A Hugging Face directory as far as listing reads one: config.json and a safetensors header."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "dtype": "bfloat16"}))
    header = json.dumps({"w": {"dtype": "BF16", "shape": [64, 64], "data_offsets": [0, 0]}}).encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def test_the_picker_shows_the_serving_model_and_switches_to_another(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # none: only the embedded and the configured model
    mine = hf_dir(tmp_path / "mine")
    with serve_fake(model=str(mine)) as daemon:
        daemon.engine.info = dataclasses.replace(FAKE_INFO, source=str(embedded_gguf()))  # serving the embedded
        window = ChatWindow(daemon.settings, ConversationStore(tmp_path / "conversations.db"), poll_ms=200)
        qtbot.addWidget(window)
        picker = window.model_picker
        qtbot.waitUntil(lambda: picker.combo.count() == 2, timeout=10_000)
        assert picker.combo.currentText().startswith(f"{EMBEDDED_NAME} · Q4_1")
        assert picker.combo.itemText(1).startswith(f"{mine} · bf16")

        with qtbot.waitSignal(picker.switched, timeout=10_000) as ended:
            picker.choose(str(mine))
        assert ended.args == [""]
        assert daemon.engine.info.source == str(mine)  # the daemon switched
        assert daemon.engine.info.version != FAKE_INFO.version
        with daemon.client() as client:
            reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200
        (record,) = daemon.wait_records(1)  # the first request after the switch names the new version
        assert record["llm"]["model"]["version"] == daemon.engine.info.version
        assert f'model = "{mine}"' in config_file().read_text().splitlines()  # and the choice is saved
        # the next status poll lists the models again, with the new one selected
        qtbot.waitUntil(lambda: picker.combo.currentText().startswith(str(mine)), timeout=10_000)
        window.close()
