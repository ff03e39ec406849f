#!/usr/bin/env bash
# The causal-target study (docs/algorithm.md, "The causal-target study"): Hopper-v5 with 3 distractor action
# dimensions x {ACE with the official target, ACE with --causal-target reward-interaction, ACE with
# --causal-method none, SAC}, and HalfCheetah-v5 x {ACE official, ACE reward-interaction}; 5 seeds, 50,000 env
# steps at the small preset (10 causal fits, resets at updates 20,000 and 40,000). Every sweep continues where it
# stopped when the script is run again; the report comes last. Run from the repository root, on one commit.
set -euo pipefail
out=benchmarks/results/causal_target_study
common=(--seed 0-4 --preset small --total-steps 50000 --eval-every 5000)
hopper=(--env Hopper-v5 --distractor-actions 3)
ace-rl sweep --out "$out/hopper_ace" --algo ace "${hopper[@]}" --causal-target reward reward-interaction "${common[@]}"
ace-rl sweep --out "$out/hopper_none" --algo ace "${hopper[@]}" --causal-method none "${common[@]}"
ace-rl sweep --out "$out/hopper_sac" --algo sac "${hopper[@]}" "${common[@]}"
ace-rl sweep --out "$out/halfcheetah_ace" --algo ace --env HalfCheetah-v5 --causal-target reward reward-interaction "${common[@]}"
ace-rl report "$out/hopper_ace" "$out/hopper_none" "$out/hopper_sac" "$out/halfcheetah_ace" --out "$out/report"
