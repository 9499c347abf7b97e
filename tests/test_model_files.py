"""Reading a model's headers without torch: GGUF quantization names, and files that are no model say so."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from trayllm.model_files import UnreadableModel, architecture, describe, gguf_quant


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("mistral-7b-instruct-v0.2.Q4_K_M.gguf", "Q4_K_M"),
        ("Llama-3.2-1B-Instruct-IQ2_XS.gguf", "IQ2_XS"),
        ("qwen2.5-0.5b-instruct-fp16.gguf", None),  # llama.cpp writes F16; an unknown spelling is not guessed
        ("model-f16.gguf", "F16"),
        ("model.gguf", None),
    ],
)
def test_the_quantization_is_read_from_a_gguf_file_name(name: str, quant: str | None):
    assert gguf_quant(name) == quant


def test_files_that_are_no_model_are_unreadable(tmp_path: Path):
    truncated = tmp_path / "cut.Q8_0.gguf"
    truncated.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (5).to_bytes(8, "little"))  # ends mid-header
    not_gguf = tmp_path / "other.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf at all, a zip")
    empty_dir = tmp_path / "no-weights"
    empty_dir.mkdir()
    (empty_dir / "config.json").write_text("{}")
    bad_header = tmp_path / "bad-header"
    bad_header.mkdir()
    (bad_header / "config.json").write_text("{}")
    (bad_header / "model.safetensors").write_bytes(b"\xff" * 16)
    messages = {}
    for path in (truncated, not_gguf, empty_dir, bad_header, tmp_path / "absent", tmp_path):
        with pytest.raises(UnreadableModel) as caught:
            describe(path)
        messages[path.name] = str(caught.value)
    assert "cut short or corrupt" in messages["cut.Q8_0.gguf"]
    assert "not a GGUF file" in messages["other.gguf"]
    assert "no .safetensors or .bin weights" in messages["no-weights"]
    assert "not a safetensors file" in messages["bad-header"]
    assert "does not exist" in messages["absent"]
    assert "neither a .gguf file nor a directory with config.json" in messages[tmp_path.name]


def gguf_with_first_entry(path: Path, key: bytes, value: bytes) -> Path:
    """A GGUF header of one string entry and no tensors."""
    entry = struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(value)) + value
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + entry)
    return path


def test_the_architecture_is_config_jsons_model_type_or_a_gguf_files_first_entry(tmp_path: Path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    assert architecture(folder) == "qwen2"
    assert architecture(gguf_with_first_entry(tmp_path / "a.gguf", b"general.architecture", b"llama")) == "llama"
    assert architecture(gguf_with_first_entry(tmp_path / "b.gguf", b"general.name", b"llama")) is None
    (tmp_path / "c.gguf").write_bytes(b"GGUF\x03")  # cut short
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("[1]")
    for unknown in (tmp_path / "c.gguf", tmp_path / "bad", tmp_path / "absent", tmp_path):
        assert architecture(unknown) is None
