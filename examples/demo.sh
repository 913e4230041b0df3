#!/usr/bin/env bash
# The main job end to end, offline: build a small base, train a zoo on VCD data, show it,
# and answer the same dilemmas under two opposite preference vectors.
# Usage: bash examples/demo.sh [BIN_DIR] [OUT_DIR]
set -euo pipefail
BIN="${1:-.venv/bin}"
OUT="${2:-demo}"
DATA="${VCD_DIR:-../shared/data/vcd}"
PFT="$BIN/pft-adapters"
if [ ! -f "$DATA/vcd_train.json" ]; then
  echo "error: VCD data not found in $DATA: set VCD_DIR to the folder holding vcd_train.json and vcd_dev.json" >&2
  exit 1
fi
mkdir -p "$OUT"

echo "== 1/4 build a small base model offline (BPE tokenizer + Llama-style LM pre-trained on the scenario texts)"
[ -f "$OUT/base/pft_base.json" ] || "$PFT" make-base --out "$OUT/base" --corpus "$DATA/vcd_train.json" --size small --epochs "${BASE_EPOCHS:-1}"

echo "== 2/4 train a zoo: one LoRA adapter per pole of 'risk' and 'time', plus the mixing head, in one paired run"
"$PFT" train --base "$OUT/base" --data "$DATA/vcd_train.json" --dims risk,time --out "$OUT/zoo" \
  --epochs "${EPOCHS:-1}" --max-length 256 --lr 5e-3 --alpha 32 --overwrite

echo "== 3/4 what the zoo holds"
"$PFT" info "$OUT/zoo"

echo "== 4/4 the same dev dilemmas answered under two opposite vectors"
"$BIN/python" - "$DATA/vcd_dev.json" "$OUT/dilemmas.json" <<'PY'
import json, sys
dev = json.load(open(sys.argv[1]))
picked = [r for r in dev if r["preference domain"] == "Risk Orientation"][:4]
json.dump(picked, open(sys.argv[2], "w"), indent=1)
PY
for v in "risk=1" "risk=-1"; do
  echo "-- vector $v"
  "$PFT" mix "$OUT/zoo" --vector "$v" --scenarios "$OUT/dilemmas.json"
done
