"""What a model switch must pass before the model serving now is stopped (``Engine.reload(model=...)``).

A switch that cannot work should cost nothing: the new ``model`` must resolve (a path that exists, a hub id in
the cache), its files must read as a model (config.json is JSON, weights are there, headers read: the same reading
`trayllm models` does), the device and quantization must be possible, and on a GPU it must fit by the doctor's
rule, counting the memory the serving model holds as free (it is released first). Only then does the old model
stop; a load that still fails after this is undone by loading the old settings back (engine.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from trayllm.config import Settings
from trayllm.doctor.fit import GIB, load_need, verdict
from trayllm.engine.models import free_and_total, resolve_device, resolve_source, weights_bytes
from trayllm.engine.precision import resolve_dtype, resolve_quantization
from trayllm.errors import ModelLoadError
from trayllm.model_files import UnreadableModel, describe

# transformers reads the tokenizer from one of these beside config.json (a GGUF file carries its own)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def check_switch(settings: Settings) -> None:
    """Raise ModelLoadError, saying why, when the model ``settings`` names cannot be loaded here."""
    source = resolve_source(settings)
    try:
        files = describe(source.path)
    except UnreadableModel as exc:
        raise ModelLoadError(str(exc)) from None
    if files.format == "hf" and not any((Path(source.path) / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{source.path} has no tokenizer ({', '.join(TOKENIZER_FILES)})")
    device = resolve_device(settings.device)
    resolve_quantization(settings.quantization, device)
    split_allowed = settings.device == "auto" and torch.cuda.device_count() > 1  # too big for one: split
    if device.type != "cuda" or files.parameters is None or split_allowed:
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    free, total = free_and_total(range(index, index + 1))[index]
    free += torch.cuda.memory_reserved(index)  # the serving model's, released before the new one loads
    weights = weights_bytes(files.parameters, settings.quantization, resolve_dtype(settings.dtype, device))
    need = load_need(weights)
    if verdict(need, free, total, settings.vram_limit) == "no":
        raise ModelLoadError(
            f"{source.name} does not fit on {device}: it needs {need / GIB:.1f} GiB, and {free / GIB:.1f} GiB of "
            f"its {total / GIB:.1f} GiB would be free; try quantization = 4bit, or a smaller model"
        )
