"""peft as the reference: a zoo's pole adapters loaded into a plain `PeftModel`, then weighted."""

from __future__ import annotations

import peft


def peft_with_poles(zoo, base):
    """`base` wrapped by peft with every pole adapter of `zoo` loaded under its slug."""
    ref = None
    for pole in zoo.pole_slugs:
        if ref is None:
            ref = peft.get_peft_model(base, zoo.peft_config(), adapter_name=pole)
        else:
            ref.add_adapter(pole, zoo.peft_config())
        peft.set_peft_model_state_dict(ref, zoo.poles[pole], adapter_name=pole)
    return ref.eval()


def activate_scaled(ref, weights: dict[str, float]) -> None:
    """Make the named adapters active together, each LoRA scaled by its weight (how a mix reads in peft)."""
    ref.base_model.set_adapter(list(weights))
    for module in ref.modules():
        if isinstance(module, peft.tuners.lora.LoraLayer):
            for pole, w in weights.items():
                module.set_scale(pole, w)
