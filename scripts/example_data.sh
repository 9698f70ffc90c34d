#!/usr/bin/env bash
# Rewrite the bundled synthetic example runs in example/results (needs: pip install -e '.[demo]').
set -euo pipefail
cd "$(dirname "$0")/.."
TRAJDOCS=${TRAJDOCS:-.venv/bin/trajdocs}
rm -rf example/results
# LightRFT with high-entropy marking, its vision-language recipe, and verl's rollout/validation dumps
$TRAJDOCS demo example/results --experiments 3 --kind lightrft --kind lightrft-vl --kind verl --max-tokens 500
# LightRFT as the default script runs it: marking off, text fields only
$TRAJDOCS demo example/results --experiments 1 --kind lightrft-plain --seed 1 --max-tokens 400
# An entropy_score on every token (other writers do this; LightRFT's saver scores flagged tokens only)
$TRAJDOCS demo example/results --experiments 1 --kind lightrft --all-scores --seed 2 --max-tokens 400 \
  --name lightrft-gsm8k-grpo-all-scores
# ROLL's logging board and rollout dumps: per-token entropy, log-probs and token rewards (colour by channel)
$TRAJDOCS demo example/results --experiments 1 --kind roll --seed 3 --max-tokens 400
