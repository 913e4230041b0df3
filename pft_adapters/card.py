"""The zoo's model card: Hub metadata plus a human-readable account of what is inside."""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # fullmatched ($ would pass a trailing line break)


def _cell(text: object) -> str:
    """Text as one markdown table cell or list item: a '|' or a line break would end the cell or the row (a
    backslash is escaped first, so that '\\|' cannot undo the escape of its '|')."""
    return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|")


def _hub_id(text: str) -> bool:
    """Whether `text` is a Hub repo id the Hub takes as base_model (not a local folder)."""
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return bool(_HUB_ID.fullmatch(text)) and not Path(text).exists()


def model_card(manifest: dict, repo_id: str | None = None) -> str:
    """Markdown with YAML front matter that the Hub indexes (library, base model, tags).

    The manifest's texts go in as they are, never through a template engine: a zoo from the
    Hub is untrusted, and a description holding `{{ ... }}` must stay text.
    """
    base_id = manifest["base_model"]["id"]
    training = manifest.get("training") or {}
    data = ModelCardData(
        library_name="pft-adapters",
        base_model=base_id if _hub_id(base_id) else None,  # not a local folder
        tags=["pft-adapters", "peft", "lora", "preference-alignment"],
        datasets=training.get("datasets") or None,
        license=training.get("license", "apache-2.0"),
    )
    name = repo_id or "this zoo"
    rows = "\n".join(
        f"| `{d['slug']}` | `{d['first']['slug']}` (+1) | {_cell(d['first']['description'])} | "
        f"`{d['second']['slug']}` (-1) | {_cell(d['second']['description'])} |"
        for d in manifest["dimensions"]
    )
    summary = "\n".join(f"- **{_cell(k)}**: {_cell(v)}" for k, v in training.items() if not isinstance(v, (dict, list)))
    first = manifest["dimensions"][0]["slug"] if manifest["dimensions"] else "risk"
    zoo = repo_id or "<zoo>"
    if manifest.get("kind") == "scorer":
        what = "a score head per pole on top of the encoder, for ranking texts by one person's values"
        command = f'pft-adapters rerank {zoo} --vector "{first}=0.8" --candidates answers.jsonl'
    else:
        what = "a mixing head that reads which pole a text expresses"
        command = f'pft-adapters mix {zoo} --vector "{first}=0.8" --prompt "Should I ...?"'
    body = f"""
# {name}

A **pft-adapters zoo**: one LoRA adapter per value pole on `{base_id}`, trained by
preference-paired fine-tuning, plus {what}. A preference vector (one number in [-1, 1] per dimension) weights the
pole adapters exactly at inference.

## Dimensions and poles

| dimension | first pole | description | second pole | description |
| --- | --- | --- | --- | --- |
{rows}

Adapters present: {", ".join(f"`{p}`" for p in manifest["poles"])}.

## Usage

```bash
pip install pft-adapters
{command}
```

```python
from pft_adapters import Zoo

zoo = Zoo.from_pretrained("{repo_id or "<zoo>"}")
```

Each pole folder is a plain PEFT LoRA adapter:
`PeftModel.from_pretrained(base, "{repo_id or "<zoo>"}", subfolder="poles/{manifest["poles"][0] if manifest["poles"] else "<pole>"}")`.

## Training summary

{summary or "- (not recorded)"}

Files are listed with their sha256 in `pft_zoo.json`; pft-adapters checks them on load.
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))
