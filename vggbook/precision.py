"""Which arithmetic a run uses on this machine: bf16 autocast where the hardware computes in
bf16 natively (CUDA GPUs with bf16, CPUs with AVX-512 BF16 or AMX), fp32 elsewhere, with the
reason; channels_last wherever the profile asks for it. The loss and softmax stay in fp32."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    amp: bool  # bf16 autocast of the forward pass
    channels_last: bool
    reason: str  # why, in words, for config.json

    @property
    def name(self) -> str:
        return "bf16" if self.amp else "fp32"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, device: torch.device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.amp)


def native_bf16(device: torch.device) -> str | None:
    """The hardware's bf16 unit, or None when it has none."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device) if torch.cuda.is_bf16_supported() else None
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    found = [name for name in ("amx_bf16", "avx512_bf16") if caps.get(name)]
    return f"CPU with {found[0].upper().replace('_', '-')}" if found else None


def choose(amp: bool, channels_last: bool, device: torch.device) -> Precision:
    """The precision a profile's ``amp`` and ``channels_last`` give on ``device``."""
    if not amp:
        return Precision(False, channels_last, "fp32: the profile asks for it (amp false)")
    unit = native_bf16(device)
    if unit is None:
        kind = "GPU" if device.type == "cuda" else "CPU (no AVX-512 BF16 or AMX)"
        return Precision(False, channels_last, f"fp32: this {kind} has no native bf16")
    return Precision(True, channels_last, f"bf16 autocast on a {unit}")
