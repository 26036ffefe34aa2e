#!/usr/bin/env bash
# The README demo's training (digits, WGAN-GP + reconstructor, 300 steps, today's defaults)
# for seeds 0-2, sparse (over the demo's dictionary) against dense (no --dict), 1,000 samples
# each, scored with the demo's digits classifier. Run after the README quick start, from the
# repository root (needs dictionary.safetensors and digits-classifier.safetensors there).
# Prints one line per run: generator, seed, FID, IS, KL to uniform, support, train seconds.
set -euo pipefail
out=benchmarks/results/demo_sparse_vs_dense
mkdir -p "$out"
for seed in 0 1 2; do
  for gen in sparse dense; do
    dict=(); metrics=(-m fid -m inception -m modes)
    if [ "$gen" = sparse ]; then dict=(--dict dictionary.safetensors); metrics+=(-m sparsity); fi
    sgan train --gan wgan-gp --recon "${dict[@]}" --data digits --steps 300 --seed "$seed" --out "$out/$gen-$seed" --force --json > "$out/$gen-$seed-train.json"
    sgan sample "$out/$gen-$seed" -n 1000 --out "$out/samples-$gen-$seed" --force --json > /dev/null
    sgan score "$out/samples-$gen-$seed" "${metrics[@]}" --ref digits --features classifier:digits-classifier.safetensors --json > "$out/$gen-$seed-score.json"
    python - "$out" "$gen" "$seed" <<'PY'
import json, sys
out, gen, seed = sys.argv[1:]
m = json.load(open(f"{out}/{gen}-{seed}-score.json"))["metrics"]
t = json.load(open(f"{out}/{gen}-{seed}-train.json"))["seconds"]
print(gen, seed, f"fid={m['fid']:.2f}", f"is={m['inception']:.3f}", f"kl={m['modes_kl']:.3f}", f"support={m.get('sparsity', float('nan')):.4f}", f"train_s={t:.1f}")
PY
  done
done
