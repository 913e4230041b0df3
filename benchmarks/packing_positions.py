"""Token positions of the paired training rows, one sequence per row against packed rows.

Rows of one scenario and one pole share the prompt; `Encoder.pack` computes that prompt
once, so the ratio printed here is the share of per-token work packing keeps (padding
aside). Rows whose prompt was cut to fit --max-length keep a head that depends on the
target's length, so they only pack with rows of an equally long target.

    python benchmarks/packing_positions.py                      # tokenizer of tiny_base()
    python benchmarks/packing_positions.py --tokenizer corpus   # BPE of the small preset, trained on --data
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pft_adapters.base import BASE_SIZES, corpus_texts, tiny_base, train_tokenizer
from pft_adapters.batching import Encoder
from pft_adapters.data import load_scenarios, paired_rows
from pft_adapters.values import ValueSpace

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "vcd" / "vcd_train.json"),
                   help="VCD file (default: ../shared/data/vcd/vcd_train.json from the repo root)")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--tokenizer", choices=("tiny", "corpus"), default="tiny",
                   help="tiny: tiny_base()'s (512 tokens, built-in sentences); corpus: the small preset's "
                        "vocabulary trained on --data, as make_base does")
    args = p.parse_args()

    space = ValueSpace.builtin()
    rows = paired_rows(load_scenarios(args.data, space))
    if args.tokenizer == "tiny":
        tokenizer = tiny_base()[1]
    else:
        tokenizer = train_tokenizer(corpus_texts(args.data), vocab_size=BASE_SIZES["small"].vocab_size)
    encoder = Encoder(tokenizer, args.max_length)
    encoded = [encoder(r.prompt, r.target, space.pole_index(r.pole)) for r in rows]
    packed = Encoder.pack(encoded)
    unpacked_positions = sum(len(r.ids) for r in encoded)
    packed_positions = sum(len(p.ids) for p in packed)
    truncated = sum(len(r.ids) == args.max_length for r in encoded)
    print(f"rows: {len(encoded)} ({truncated} with a cut prompt)  packed rows: {len(packed)}")
    print(f"positions unpacked: {unpacked_positions}  packed: {packed_positions}  "
          f"ratio packed/unpacked: {packed_positions / unpacked_positions:.3f}")


if __name__ == "__main__":
    main()
