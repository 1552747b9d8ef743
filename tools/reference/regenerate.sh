#!/usr/bin/env bash
# Regenerate the reference data: tiny checkpoints, float32 goldens (transformers), FP8 goldens
# (DeepSeek's official inference code with the PyTorch stand-in kernels), each with its
# robustness check (--perturb, README.md "Robustness").
#
#   tools/reference/regenerate.sh /path/to/official/inference/model.py [DATA_DIR]
#
# Run from the repository root. PY names the Python that has tools/reference/requirements.txt
# installed (default: python3). DATA_DIR defaults to tests/data. DSRT, if set, names a dsrt binary
# whose `dsrt logits` output is cross-checked against both goldens and recorded in their json
# (robustness.dsrt_cross_check); without it that entry is left out.
set -euo pipefail
OFFICIAL=${1:?usage: $0 OFFICIAL_MODEL_PY [DATA_DIR]}
DATA=${2:-tests/data}
PY=${PY:-python3}
T=tools/reference
XCHECK=()
if [ -n "${DSRT:-}" ]; then XCHECK=(--dsrt "$DSRT"); fi

# case  prompt-length  decode-steps  prompt-seed  (weight seeds are in make_tiny_checkpoint.py CASES;
# both chosen with search_prompt.py: no near-ties, robust under every perturbation)
while read -r CASE PLEN NDEC SEED; do
  "$PY" $T/make_tiny_checkpoint.py --case "$CASE" --out "$DATA/$CASE"
  "$PY" $T/golden_transformers.py --case-dir "$DATA/$CASE" --prompt-len "$PLEN" --decode "$NDEC" \
      --prompt-seed "$SEED" --perturb "${XCHECK[@]}"
  "$PY" $T/golden_official.py --official-model "$OFFICIAL" --case-dir "$DATA/$CASE" \
      --prompt-len "$PLEN" --decode "$NDEC" --prompt-seed "$SEED" --perturb --held-out 128 "${XCHECK[@]}"
done <<'CASES'
tiny-yarn 20 8 15
tiny-plain 16 8 242
CASES
