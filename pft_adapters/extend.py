"""Growing a zoo: train the poles of new dimensions on top of an existing zoo.

The zoo's own pole adapters are carried over untouched, so their saved files stay
byte-identical; only the new poles are trained, by the same paired trainer, on the
zoo's own base model. The mixing head grows, reading texts as before (through its
encoder, if it records one): its feature standardisation and its
rows for the old poles and dimensions are copied from the old head and kept
frozen, and only the new rows are fitted, on the new data. Old poles are therefore
read exactly as before; for the dimension logits (a softmax over every dimension),
the new rows are also kept below the old head's choice on stand-in samples of the
old feature distribution, so that old texts are not claimed by a new dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from .data import Scenario, dimensions_in
from .errors import PFTError
from .head import MixingHead, head_features
from .train import TrainConfig, held_out, labelled_options, train_zoo
from .values import ValueSpace
from .zoo import Zoo


@dataclass
class ExtendResult:
    zoo: Zoo
    report: dict  # the head's accuracy on new and old poles (None where not measured)
    losses: list[float]
    seconds: float


def extend_zoo(
    zoo: Zoo,
    model: nn.Module,
    tokenizer,
    scenarios: Sequence[Scenario],
    space: ValueSpace,
    config: TrainConfig,
    dev: Sequence[Scenario] | None = None,
    old_data: Sequence[Scenario] | None = None,
    base_name: str | None = None,
    progress: bool = True,
    device: str | None = None,
    **train_options,
) -> ExtendResult:
    """`zoo` plus one trained adapter per pole of `space` (dimensions the zoo does not have yet).

    `model` must be the zoo's base (checked by fingerprint); it is wrapped in place.
    The zoo's LoRA shape is used whatever `config.lora` says, and its row length unless
    `config.max_length` gives one. `dev` measures the head on the new poles (default:
    a tenth of `scenarios`), `old_data` on the old ones.
    """
    combined = check_extension(zoo, scenarios, space)
    zoo.check_base(model, base_name)
    # the zoo's adapter shape, kind (and its defaults, not the config's), adapter dropout and row length
    max_length = zoo.max_length if config.max_length is None else config.max_length
    config = replace(config, lora=zoo.spec, kind=zoo.kind, lora_dropout=zoo.lora_dropout, max_length=max_length).resolved()
    result = train_zoo(model, tokenizer, scenarios, space, config, base_id=zoo.base.id, base_revision=zoo.base.revision,
                       progress=progress, device=device, with_head=False, **train_options)
    head, report = None, {"head": "none: the zoo had no mixing head"}
    if zoo.head is not None:
        head, report = grow_head(zoo.head, model, tokenizer, scenarios, dev, old_data, space, config)
    entry = {
        "dimensions": [d.slug for d in space],
        "poles": space.pole_slugs,
        "scenarios": result.zoo.training["scenarios"],
        "rows": result.zoo.training["rows"],
        "epochs": config.epochs,
        "steps": result.zoo.training["steps"],
        "batch_size": config.batch_size,
        "lr": config.lr,
        "max_length": config.max_length,
        "seed": config.seed,
        "final_loss": result.zoo.training["final_loss"],
        "head": report,
    }
    training = dict(zoo.training)
    training["extensions"] = [*training.get("extensions", []), entry]
    training["extended_with"] = ", ".join(d for e in training["extensions"] for d in e["dimensions"])
    grown = Zoo(space=combined, spec=zoo.spec, base=zoo.base, poles={**zoo.poles, **result.zoo.poles},
                head=head, training=training, kind=zoo.kind, score_heads={**zoo.score_heads, **result.zoo.score_heads})
    return ExtendResult(grown, report, result.losses, result.seconds)


def check_extendable(zoo: Zoo) -> None:
    """Refuse a conditioned zoo: its one shared adapter is steered by the prompt, so poles trained apart would go unused."""
    if zoo.method == "conditioned":
        raise PFTError(f"{zoo.source or 'this zoo'} was trained with --method conditioned (one shared adapter steered by "
                       "the prompt): extend grows zoos of per-pole adapters; train a new conditioned zoo on all the pairs")


def check_extension(zoo: Zoo, scenarios: Sequence[Scenario], space: ValueSpace) -> ValueSpace:
    """The zoo's space grown by `space`, once `scenarios` are known to train every new pole and nothing else.

    Cheap, so that the CLI refuses bad inputs before the base model loads; `extend_zoo` runs it too.
    """
    check_extendable(zoo)
    for dim in space:
        for slug in (dim.slug, *(p.slug for p in dim.poles)):
            if zoo.space.has_dimension(slug) or zoo.space.has_pole(slug):
                raise PFTError(f"the zoo already has '{slug}': extend trains only dimensions it does not have yet")
    new, present = [d.slug for d in space], dimensions_in(scenarios)
    foreign = [d for d in present if d not in new]
    if foreign:
        raise PFTError(f"the data for the new poles also holds dimension(s) {foreign}: keep only {new}")
    empty = [d for d in new if d not in present]
    if empty:  # its poles would be written untrained
        raise PFTError(f"the data for the new poles holds no scenarios of {', '.join(empty)}: its poles would be written "
                       "untrained; check --dims, --data and --pair")
    return ValueSpace(zoo.space.dimensions + space.dimensions)


def grow_head(old: MixingHead, model: nn.Module, tokenizer, scenarios: Sequence[Scenario],
              dev: Sequence[Scenario] | None, old_data: Sequence[Scenario] | None, space: ValueSpace,
              config: TrainConfig, anchors: int = 512) -> tuple[MixingHead, dict]:
    """The old head plus rows for the poles and dimensions of `space`, and what it scores.

    Old rows, mean and std are copied and never trained. New pole rows are fitted on
    the new options; new dimension rows on the new options (against the frozen old
    logits) and on `anchors` standard-normal samples of the standardised feature
    space labelled with the old head's own dimension choice.
    """
    if dev is None:  # as train_head does: a tenth held out to measure the new rows
        scenarios, dev = held_out(scenarios, config.seed)
    texts, poles, dims = labelled_options(scenarios)
    features = head_features(model, tokenizer, texts, old.encoder)
    n_old_dims, n_new_dims = len(old.dimension_slugs), len(space)
    head = MixingHead(old.hidden_size, old.pole_slugs + space.pole_slugs, old.dimension_slugs + [d.slug for d in space],
                      old.encoder)
    generator = torch.Generator().manual_seed(config.seed)
    new_poles = nn.Linear(old.hidden_size, 2 * n_new_dims)
    new_dims = nn.Linear(old.hidden_size, n_new_dims)
    for layer in (new_poles, new_dims):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    with torch.no_grad():
        z = (features.float() - old.mean) / old.std
        z_anchor = torch.randn(anchors, old.hidden_size, generator=generator)
        old_dim_logits = {"data": old.dimensions(z), "anchor": old.dimensions(z_anchor)}
        anchor_labels = old_dim_logits["anchor"].argmax(-1)
    new_dim_index = {d.slug: i for i, d in enumerate(space)}
    pair_index = torch.tensor([new_dim_index[d] for d in dims])
    pole_side = torch.tensor([space.pole_index(p) % 2 for p in poles])
    dim_labels = torch.tensor([n_old_dims + new_dim_index[d] for d in dims])
    params = [*new_poles.parameters(), *new_dims.parameters()]
    opt = torch.optim.AdamW(params, lr=0.05, weight_decay=1e-3)
    for _ in range(config.head_steps):
        opt.zero_grad()
        pairs = new_poles(z).view(len(z), -1, 2)[torch.arange(len(z)), pair_index]
        data_logits = torch.cat([old_dim_logits["data"], new_dims(z)], dim=-1)
        anchor_logits = torch.cat([old_dim_logits["anchor"], new_dims(z_anchor)], dim=-1)
        loss = (nn.functional.cross_entropy(pairs, pole_side) + nn.functional.cross_entropy(data_logits, dim_labels)
                + nn.functional.cross_entropy(anchor_logits, anchor_labels))
        loss.backward()
        opt.step()
    with torch.no_grad():
        head.mean.copy_(old.mean)
        head.std.copy_(old.std)
        head.poles.weight.copy_(torch.cat([old.poles.weight, new_poles.weight]))
        head.poles.bias.copy_(torch.cat([old.poles.bias, new_poles.bias]))
        head.dimensions.weight.copy_(torch.cat([old.dimensions.weight, new_dims.weight]))
        head.dimensions.bias.copy_(torch.cat([old.dimensions.bias, new_dims.bias]))
    head.eval()
    report: dict[str, float | None] = {"new_pole_accuracy": None, "new_dimension_accuracy": None, "new_examples": 0,
                                        "old_pole_accuracy": None, "old_pole_accuracy_before": None,
                                        "old_dimension_accuracy": None, "old_dimension_accuracy_before": None, "old_examples": 0}
    dev_texts, dev_poles, dev_dims = labelled_options(dev)
    if dev_texts:
        scored = head.evaluate(head_features(model, tokenizer, dev_texts, old.encoder), dev_poles, dev_dims)
        report.update(new_pole_accuracy=round(scored.pole_accuracy, 4),
                      new_dimension_accuracy=round(scored.dimension_accuracy, 4), new_examples=scored.examples)
    known = set(old.dimension_slugs)
    old_texts, old_poles, old_dims = labelled_options([s for s in old_data or () if s.dimension in known])
    if old_texts:
        old_features = head_features(model, tokenizer, old_texts, old.encoder)
        after, before = head.evaluate(old_features, old_poles, old_dims), old.evaluate(old_features, old_poles, old_dims)
        report.update(old_pole_accuracy=round(after.pole_accuracy, 4), old_pole_accuracy_before=round(before.pole_accuracy, 4),
                      old_dimension_accuracy=round(after.dimension_accuracy, 4),
                      old_dimension_accuracy_before=round(before.dimension_accuracy, 4), old_examples=after.examples)
    return head, report
