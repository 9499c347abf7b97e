"""Which code runs the model (model_impl), what quantization auto leaves out when memory is short, and that the
native CPU path loads without importing transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trayllm.config import load_settings
from trayllm.engine import models
from trayllm.engine.models import load_model, use_native
from trayllm.engine.native_model import NativeLlama
from trayllm.engine.precision import Precision, int8_kernel_available
from trayllm.errors import ModelLoadError

CPU = torch.device("cpu")


def test_auto_runs_a_plain_llama_natively_on_the_cpu(converted_model_dir: Path) -> None:
    assert use_native("auto", converted_model_dir, CPU, "none")
    assert use_native("auto", converted_model_dir, CPU, "int8-decode")
    assert not use_native("transformers", converted_model_dir, CPU, "none")


def test_auto_leaves_to_transformers_what_the_native_model_cannot_run(
    converted_model_dir: Path, tmp_path: Path
) -> None:
    assert not use_native("auto", converted_model_dir, torch.device("cuda", 0), "none")
    assert not use_native("auto", converted_model_dir, CPU, "4bit")
    config = json.loads((converted_model_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["Qwen2ForCausalLM"]}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert not use_native("auto", tmp_path, CPU, "none")
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert not use_native("auto", tmp_path, CPU, "none")  # pickled weights: transformers reads those


def test_native_names_why_it_cannot(converted_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="runs on the CPU only.*TRAYLLM_MODEL_IMPL=auto"):
        use_native("native", converted_model_dir, torch.device("cuda", 0), "none")
    with pytest.raises(ModelLoadError, match="has no 4bit"):
        use_native("native", converted_model_dir, CPU, "4bit")


def test_model_impl_transformers_loads_through_transformers(converted_model_dir: Path, tmp_path: Path) -> None:
    settings = {"model": str(converted_model_dir), "cache_dir": str(tmp_path), "quantization": "none"}
    native = load_model(load_settings(settings, environ={}))
    theirs = load_model(load_settings({**settings, "model_impl": "transformers"}, environ={}))
    assert isinstance(native.model, NativeLlama) and not isinstance(theirs.model, NativeLlama)
    assert native.info.version == theirs.info.version  # the same weights in the same precision


@pytest.mark.skipif(not int8_kernel_available(), reason="torch has no int8 weight kernel")
def test_auto_leaves_the_int8_copies_out_when_memory_is_short(
    converted_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = Precision(torch.bfloat16, "int8-decode")
    parameters = models.parameter_count(models.hf_weight_files(converted_model_dir))
    monkeypatch.setattr(models, "memory_available", lambda: parameters * 10)
    assert models._without_int8_copies_unless_they_fit(wanted, converted_model_dir) == wanted
    monkeypatch.setattr(models, "memory_available", lambda: parameters * 3)  # 2 + 1 bytes a parameter: over 90%
    assert models._without_int8_copies_unless_they_fit(wanted, converted_model_dir) == Precision(torch.bfloat16, "none")
    monkeypatch.setattr(models, "memory_available", lambda: None)  # unknown (not Linux): kept
    assert models._without_int8_copies_unless_they_fit(wanted, converted_model_dir) == wanted


def test_memory_available_reads_this_machine() -> None:
    available = models.memory_available()
    assert available is None or available > 0


def test_the_native_cpu_path_loads_and_generates_without_importing_transformers(
    converted_model_dir: Path, tmp_path: Path
) -> None:
    """What makes the warm start fast: neither the model, the tokenizer nor the int8 layers need transformers."""
    script = f"""
import sys
from trayllm.config import load_settings
from trayllm.engine.batch import prefill
from trayllm.engine.models import load_model
settings = {{"model": {str(converted_model_dir)!r}, "cache_dir": {str(tmp_path)!r}}}
loaded = load_model(load_settings(settings, environ={{}}))
ids = loaded.tokenizer.apply_chat_template([{{"role": "user", "content": "Hi"}}], add_generation_prompt=True)
batch, out = prefill(loaded.model, ["a"], [ids], 0, loaded.device)
print(type(loaded.model).__name__, loaded.info.quantization, int(out.logits.argmax(-1)[0]) >= 0)
print(sorted(name for name in sys.modules if name == "transformers" or name.startswith("transformers.")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    lines = result.stdout.splitlines()
    kind = "int8-decode" if int8_kernel_available() else "none"
    assert lines[0] == f"NativeLlama {kind} True"
    assert lines[1] == "[]"
