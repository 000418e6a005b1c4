"""Whether this machine can hold a base in 4 bits (finetune: qlora): bitsandbytes installed, and its NF4
quantization working on the device. Light to import: preflight asks before any job runs."""

from __future__ import annotations

import torch


def four_bit_missing(device="cpu") -> str | None:
    """Why a base cannot be loaded in 4 bits on ``device`` here (None: it can): bitsandbytes not installed,
    or the installed version without 4-bit support on this device (a probe quantizes a few numbers)."""
    try:
        import bitsandbytes
        from bitsandbytes.functional import dequantize_4bit, quantize_4bit
    except ImportError:
        return "bitsandbytes is not installed (pip install 'tunejudge[qlora]')"
    except Exception as e:  # noqa: BLE001 -- a broken install says why
        return f"bitsandbytes cannot be imported ({type(e).__name__}: {str(e)[:200]})"
    try:
        x = torch.linspace(-1, 1, 128, device=device, dtype=torch.bfloat16).reshape(2, 64)
        q, state = quantize_4bit(x, quant_type="nf4", compress_statistics=True)
        if (dequantize_4bit(q, state) - x).abs().max().item() > 0.2:
            return f"bitsandbytes {bitsandbytes.__version__} quantizes wrongly on {device}"
    except Exception as e:  # noqa: BLE001 -- no kernel for this device
        return (f"bitsandbytes {bitsandbytes.__version__} has no 4-bit support on {torch.device(device).type} "
                f"({type(e).__name__}: {str(e)[:160]})")
    return None
