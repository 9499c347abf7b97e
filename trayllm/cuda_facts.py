"""Facts about CUDA devices that the engine and the doctor must agree on (no torch here: the doctor is a client)."""

from __future__ import annotations

BF16_FROM_CAPABILITY = (8, 0)


def has_bf16_tensor_cores(capability: tuple[int, int]) -> bool:
    """Whether a device of this compute capability computes in bf16 at full speed.

    bf16 tensor cores arrived with Ampere (8.0). ``torch.cuda.is_bf16_supported()`` also says yes to older
    cards (T4, V100, RTX 20xx), because it counts emulation, where bf16 runs far slower than fp16: the engine
    and ``trayllm doctor`` both ask this instead, about the device the model is configured for.
    """
    return (int(capability[0]), int(capability[1])) >= BF16_FROM_CAPABILITY
