"""Serve several users from one zoo: infer each one's vector from their past decisions, then
answer all of them in one batch, each row mixed by its own user's vector.

    python examples/serve_users.py ZOO --history alice.jsonl --history bob.jsonl \
        --prompt "A friend offers you a share in a new business. What do you do?"

ZOO is a zoo folder or a Hub name (org/name, org/name@revision; fetched once, then cached).
A history is JSONL, one decision per line (docs/personalize.md):

    {"scenario": "...", "options": ["...", "..."], "chosen": 1}

The base model is loaded once and every pole adapter is attached once; a batch row's vector
only sets the coefficients its adapters are weighted by, so users with different values share
one forward pass.
"""

from __future__ import annotations

import argparse
import sys

from pft_adapters import PFTError, Zoo, load_mixed
from pft_adapters.history import load_history
from pft_adapters.infer import METHODS, infer
from pft_adapters.mix import MixedModel


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1, refused with the usage rather than deep in generation."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("zoo", help="zoo folder or Hub name")
    p.add_argument("--history", action="append", required=True, help="one user's history (JSONL); repeat per user")
    p.add_argument("--prompt", required=True, help="what every user asks")
    p.add_argument("--method", choices=METHODS, default="head", help="how to infer each vector (default head)")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="answer length (default 64)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the base model's own)")
    a = p.parse_args(argv)
    try:
        zoo = Zoo.from_pretrained(a.zoo)  # the zoo and the histories are checked before the base model loads
        if zoo.kind != "llm":
            raise PFTError(f"{a.zoo} is a {zoo.kind} zoo, which ranks texts rather than writing them: "
                           "rank candidate answers with `pft-adapters rerank --history`")
        histories = [load_history(path, zoo.space) for path in a.history]
        mixed = load_mixed(zoo, device=a.device)
        assert isinstance(mixed, MixedModel)  # an LLM zoo, checked above
        vectors = []
        for path, decisions in zip(a.history, histories):
            found = infer(mixed, decisions, method=a.method)
            print(f"{path}: {found.vector.describe()}")
            vectors.append(found.vector)
        answers = mixed.generate([a.prompt] * len(vectors), vectors, max_new_tokens=a.max_new_tokens)
    except PFTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: stop quietly, with the shell's code for it
        return 130
    for path, answer in zip(a.history, answers):
        print(f"\n[{path}]\n{answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
