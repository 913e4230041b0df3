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

from pft_adapters import PFTError, load_mixed
from pft_adapters.history import load_history
from pft_adapters.infer import METHODS, infer
from pft_adapters.mix import MixedModel


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("zoo", help="zoo folder or Hub name")
    p.add_argument("--history", action="append", required=True, help="one user's history (JSONL); repeat per user")
    p.add_argument("--prompt", required=True, help="what every user asks")
    p.add_argument("--method", choices=METHODS, default="head", help="how to infer each vector (default head)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", help="cpu, cuda, ... (default: the base model's own)")
    a = p.parse_args(argv)
    try:
        mixed = load_mixed(a.zoo, device=a.device)
        if not isinstance(mixed, MixedModel):
            raise PFTError(f"{a.zoo} is a {mixed.zoo.kind} zoo, which ranks texts rather than writing them: "
                           "rank candidate answers with `pft-adapters rerank --history`")
        vectors = []
        for path in a.history:
            found = infer(mixed, load_history(path, mixed.zoo.space), method=a.method)
            print(f"{path}: {found.vector.describe()}")
            vectors.append(found.vector)
        answers = mixed.generate([a.prompt] * len(vectors), vectors, max_new_tokens=a.max_new_tokens)
    except PFTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path, answer in zip(a.history, answers):
        print(f"\n[{path}]\n{answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
