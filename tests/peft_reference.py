"""peft as the reference: a zoo's pole adapters in a plain `PeftModel` (`Zoo.to_peft`), weighted as a mix."""

from __future__ import annotations

import peft


def activate_scaled(ref, weights: dict[str, float]) -> None:
    """Make the named adapters active together, each LoRA scaled by its weight (how a mix reads in peft)."""
    ref.base_model.set_adapter(list(weights))
    for module in ref.modules():
        if isinstance(module, peft.tuners.lora.LoraLayer):
            for pole, w in weights.items():
                module.set_scale(pole, w)
