"""The precision a model runs in (its load dtype and its quantization), and the CPU's int8 path.

On a CPU with native bf16 (AVX512-BF16 or AMX), dtype auto is bf16: through trayllm's scheduler on SmolLM2-135M
it decoded one stream as fast as fp32 and eight streams 1.6× faster, with 0.6× the first-token latency
(docs/BENCHMARKS.md). Unlike fp32, its kernels do not promise a row the same logits bit for bit whatever else is
in the batch, so a greedy reply can change while other requests run (as on vLLM or any bf16 server); set
dtype = float32 where that matters.

``quantization = int8`` adds int8 linear layers: int8 weights with one scale per output channel, multiplied in the
model's dtype by the kernel torchao's int8 weight-only path uses on CPU (``aten._weight_int8pack_mm``). lm_head is
quantized too: with tied embeddings it is the largest matrix (vocabulary × hidden); it gets its own int8 copy while
the embedding keeps serving lookups. Its kernel is a matrix-vector product per row: at one row it is 2.7× faster
than bf16's (a decode step of one stream reads half the bytes), at eight rows slower, and prefill's hundreds of
rows are far slower. So the CPU default, ``int8-decode``, keeps both: the float weights for passes of more than
``DECODE_ROWS`` rows (prefill, busy batches) and int8 copies for the narrow ones (decode steps of one to four
streams), at the cost of half the float weights' memory again. ``int8`` alone saves that memory but is slower
wherever several streams run or prompts are long. PyTorch's dynamic
int8 (torch.ao, int8 activations too) was faster still but cost 1.4 nats/token of log-likelihood (one scale per
activation tensor cannot hold a small model's MLP outliers); weight-only int8 costs under 0.02
(tests/engine/test_quality.py guards both paths).

The quantized layers are cached beside the converted safetensors (safetensors: plain tensors, no code), keyed by
the weights' content digest and the precision, so a warm start only reads them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trayllm.cuda_facts import has_bf16_tensor_cores
from trayllm.engine.safetensors_read import read_safetensors
from trayllm.errors import ModelLoadError

log = logging.getLogger(__name__)

INT8_FORMAT = 1  # bump when what int8 quantizes, or how, changes: older cache files are then ignored


@dataclass(frozen=True)
class Precision:
    """What the model is loaded as: ``dtype`` for its floating-point tensors, and the quantization applied."""

    dtype: torch.dtype
    quantization: str  # none, int8, int8-decode, 4bit or 8bit

    @property
    def label(self) -> str:
        """The part of the model version that names the precision: fp32, bf16, bf16-int8-decode, fp16-4bit."""
        short = short_dtype(self.dtype)
        return short if self.quantization == "none" else f"{short}-{self.quantization}"


def short_dtype(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def cpu_has_bf16() -> bool:
    """This CPU multiplies bf16 natively (AVX512-BF16 or AMX), where bf16 measured faster than fp32; elsewhere
    bf16 is emulated and slower."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def int8_kernel_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


def resolve_quantization(quantization: str, device: torch.device) -> str:
    """The quantization to apply: auto is int8-decode on a CPU whose PyTorch has the int8 kernel (see the module
    docstring for why), none elsewhere. A combination that cannot run is a ModelLoadError that names the fix,
    raised before any slow step (a GGUF conversion)."""
    if quantization == "auto":
        return "int8-decode" if device.type == "cpu" and int8_kernel_available() else "none"
    if quantization in ("int8", "int8-decode"):
        if device.type != "cpu":
            raise ModelLoadError(
                f"quantization={quantization} is trayllm's int8 for the CPU; on a GPU set TRAYLLM_QUANTIZATION "
                "to 8bit (bitsandbytes), none or auto"
            )
        if not int8_kernel_available():
            raise ModelLoadError(
                f"quantization={quantization} needs PyTorch 2.4 or later (this is {torch.__version__}); "
                "set TRAYLLM_QUANTIZATION=none"
            )
    elif quantization in ("4bit", "8bit"):
        if device.type != "cuda":
            raise ModelLoadError(
                f"quantization={quantization} needs a CUDA GPU (bitsandbytes); set TRAYLLM_QUANTIZATION "
                "to int8 or none on this machine"
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ModelLoadError(
                f"quantization={quantization} needs bitsandbytes: pip install 'trayllm[gpu]'"
            ) from None
    return quantization


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """The load dtype: an explicit setting as is; auto is bf16 on a GPU with bf16 tensor cores, fp16 on an older
    one; on the CPU bf16 where it is native (measured faster than fp32, see the module docstring), else fp32. The
    GPU asked is ``device`` itself (cuda:N), not torch's current device."""
    if setting != "auto":
        return getattr(torch, setting)
    if device.type == "cuda":
        return torch.bfloat16 if has_bf16_tensor_cores(torch.cuda.get_device_capability(device)) else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def resolve_precision(dtype: str, quantization: str, device: torch.device) -> Precision:
    """The ``dtype`` and ``quantization`` settings, resolved for ``device``."""
    applied = resolve_quantization(quantization, device)
    return Precision(resolve_dtype(dtype, device), applied)


def conversion_dtype(load_dtype: torch.dtype) -> torch.dtype:
    """What a GGUF is de-quantized to: fp32 only for an fp32 load, else bf16, with fp32's range and half its disk
    (a 7B model: 14 GB, not 28); a bf16 or fp16 load casts from it. (The RAM peak shrinks less: transformers
    de-quantizes every tensor to fp32 before the cast.)"""
    return torch.float32 if load_dtype == torch.float32 else torch.bfloat16


def bitsandbytes_config(precision: Precision) -> Any | None:
    """BitsAndBytesConfig for 4bit/8bit (nf4 computes in the load dtype); None for every other precision."""
    if precision.quantization not in ("4bit", "8bit"):
        return None
    from transformers import BitsAndBytesConfig

    if precision.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=precision.dtype,
            bnb_4bit_use_double_quant=True,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


# -- the CPU's int8 path -------------------------------------------------------------------------


class Int8Linear(torch.nn.Module):
    """A linear layer with int8 weights and one scale per output channel, computing in its input's dtype."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)

    @classmethod
    def quantize(cls, linear: torch.nn.Linear) -> Int8Linear:
        """Symmetric per-channel int8 of ``linear``'s weight; scales and bias stay in its dtype."""
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        quantized = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(quantized.contiguous(), scales.to(linear.weight.dtype), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).contiguous()
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales.to(x.dtype))
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias


DECODE_ROWS = 4
"""The widest pass int8-decode runs on its int8 copies. On SmolLM2-135M (bf16, this 2-core AVX-512 machine), a
decode step took 22 / 25 / 28 / 44 ms on int8 at 1 / 2 / 4 / 8 rows and 35 / 37 / 39 / 40 ms on bf16."""


class DecodeInt8Linear(torch.nn.Module):
    """A linear layer with both weights: the float one for wide passes, the int8 copy for passes of at most
    DECODE_ROWS rows, each where its kernel is the faster (see the module docstring)."""

    def __init__(self, wide: torch.nn.Linear, narrow: Int8Linear) -> None:
        super().__init__()
        self.wide, self.narrow = wide, narrow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        return self.narrow(x) if rows <= DECODE_ROWS else self.wide(x)


def int8_cache_file(cache_dir: Path, digest: str, dtype: torch.dtype, layout: str) -> Path:
    """Where the int8 layers of the weights with content ``digest``, loaded in ``dtype`` into a model whose
    linear layers are named and shaped after ``layout`` ("transformers" or "native", which fuses some), are
    cached beside their conversions. int8 and int8-decode share them: the same weights, quantized alike."""
    return cache_dir / "converted" / f"{digest[:24]}-{short_dtype(dtype)}-int8-{layout}-v{INT8_FORMAT}.safetensors"


def quantize_int8(
    model: torch.nn.Module, cache_file: Path, progress: Callable[[str], None], *, keep_float: bool = False
) -> None:
    """Give every linear layer of ``model`` (lm_head included) int8 weights, in place: an Int8Linear instead, or
    with ``keep_float`` (int8-decode) a DecodeInt8Linear beside the float one. The int8 layers are read from
    ``cache_file`` when it holds this model's, else quantized now and written there for the next start."""
    linears = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    layers = _read_cache(cache_file, set(linears))
    if layers is None:
        progress("quantizing the linear layers to int8 (first start only)")
        layers = {name: Int8Linear.quantize(linear) for name, linear in linears.items()}
        _write_cache(cache_file, layers)
    for name, layer in layers.items():
        linear = linears[name]
        narrow = layer.to(linear.weight.device)
        model.set_submodule(name, DecodeInt8Linear(linear, narrow) if keep_float else narrow)


def _read_cache(path: Path, names: set[str]) -> dict[str, Int8Linear] | None:
    """The cached layers named ``names``, or None when the file is missing, unreadable or for another layout."""
    if not path.is_file():
        return None
    try:
        tensors = read_safetensors(path)  # one read, each tensor 64-byte aligned: the int8 kernel needs it
    except Exception as exc:  # a truncated or foreign file: quantize again and overwrite it
        log.warning("ignoring the unreadable int8 cache %s: %s", path, exc)
        return None
    if {key.rpartition(".")[0] for key in tensors} != names:
        log.warning("ignoring the int8 cache %s: it holds other layers than this model's", path)
        return None
    return {
        name: Int8Linear(tensors[f"{name}.weight"], tensors[f"{name}.scales"], tensors.get(f"{name}.bias"))
        for name in names
    }


def _write_cache(path: Path, layers: dict[str, Int8Linear]) -> None:
    """Written under a temporary name and renamed, so a crash never leaves half a file under the real name."""
    from safetensors.torch import save_file

    tensors = {f"{name}.{key}": tensor for name, layer in layers.items() for key, tensor in layer.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, path)
    except OSError as exc:  # a full or read-only cache costs the next start time, never this one its model
        log.warning("could not cache the int8 layers in %s: %s", path, exc)
        tmp.unlink(missing_ok=True)
