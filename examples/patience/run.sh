#!/usr/bin/env bash
# Add your own value pair to a zoo, end to end, with no code (docs/add-a-value-pair.md):
# define -> check -> convert -> extend -> mix -> evaluate -> push.
# Usage: bash examples/patience/run.sh [ZOO] [OUT_DIR]
#   ZOO      a zoo folder or Hub name to grow; default: a small risk/time zoo built here from VCD data
#   OUT_DIR  where everything is written (default: patience-demo)
# Environment: BIN (default .venv/bin), VCD_DIR (default ../shared/data/vcd), EPOCHS (default 8), BASE_EPOCHS (default 1).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${BIN:-.venv/bin}"
PFT="$BIN/pft-adapters"
ZOO="${1:-}"
OUT="${2:-patience-demo}"
DATA="${VCD_DIR:-../shared/data/vcd}"
PAIRS="$HERE/pairs.json"
mkdir -p "$OUT"

echo "== 1/7 define: the pair definition file"
cat "$PAIRS"

echo "== 2/7 check it, and list it next to the built-in dimensions"
"$PFT" pairs --check "$PAIRS"
"$PFT" pairs --pairs "$PAIRS" | tail -n 3

echo "== 3/7 convert the A/B items into paired JSONL; keep the last 16 of 64 for evaluation"
"$PFT" convert ab "$HERE/items.json" --pairs "$PAIRS" --pair patience --out "$OUT/patience-all.jsonl" --overwrite
head -n 48 "$OUT/patience-all.jsonl" > "$OUT/patience-train.jsonl"
tail -n +49 "$OUT/patience-all.jsonl" > "$OUT/patience-dev.jsonl"

OLD_DATA=()
[ -f "$DATA/vcd_dev.json" ] && OLD_DATA=(--old-data "$DATA/vcd_dev.json")
if [ -z "$ZOO" ]; then
  if [ ! -f "$DATA/vcd_train.json" ]; then
    echo "error: no ZOO given and no VCD data in $DATA to build one: pass a zoo, or set VCD_DIR" >&2
    exit 1
  fi
  ZOO="$OUT/zoo"
  if [ ! -f "$ZOO/pft_zoo.json" ]; then
    echo "== (no zoo given: building a small base and a risk/time zoo from VCD data first)"
    [ -f "$OUT/base/pft_base.json" ] || "$PFT" make-base --out "$OUT/base" --corpus "$DATA/vcd_train.json" --size small --epochs "${BASE_EPOCHS:-1}"
    "$PFT" train --base "$OUT/base" --data "$DATA/vcd_train.json" --dims risk,time --limit 120 --epochs 1 \
      --max-length 384 --out "$ZOO" --overwrite
  fi
fi

echo "== 4/7 extend: train only the new poles on the zoo's own base; the old pole files stay byte-identical"
"$PFT" extend "$ZOO" --pairs "$PAIRS" --data "$OUT/patience-train.jsonl" --dev "$OUT/patience-dev.jsonl" \
  "${OLD_DATA[@]}" --epochs "${EPOCHS:-8}" --max-length 384 --out "$OUT/zoo2" --overwrite
if [ -d "$ZOO/poles" ]; then
  for f in "$ZOO"/poles/*/adapter_model.safetensors; do
    rel="${f#"$ZOO"/}"
    cmp -s "$f" "$OUT/zoo2/$rel" && echo "  unchanged: $rel" || { echo "error: $rel changed" >&2; exit 1; }
  done
fi
"$PFT" info "$OUT/zoo2"

echo "== 5/7 mix: the held-out dilemmas under patience=+1 and patience=-1"
for v in "patience=1" "patience=-1"; do
  echo "-- vector $v"
  "$PFT" mix "$OUT/zoo2" --vector "$v" --scenarios "$OUT/patience-dev.jsonl"
done

echo "== 6/7 evaluate every pole on the held-out items"
"$PFT" eval "$OUT/zoo2" --data "$OUT/patience-dev.jsonl" --all-poles --task select-one

echo "== 7/7 push (needs a Hub token with write access: set HF_TOKEN or run 'hf auth login'); not run here:"
echo "  $PFT push $OUT/zoo2 your-org/values-zoo-patience"
