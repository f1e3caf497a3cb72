#!/usr/bin/env bash
# The CUDA path in one command, into one results file (docs/cuda.md).
#
#   [TINY="tiny-llama ..."] benchmarks/gpu.sh [OUT_DIR]   (default: ./gpu-results; the summary is OUT_DIR/results.md)
#
# Always: ORT's CUDA placement of fp16 / bf16 / int4 / int8 / float32 builds of the tiny models
# (`validate --cuda-placement`, no GPU needed: a C shim built with cc) and tests/test_cuda_placement.py.
# With a usable GPU and onnxruntime-gpu, also: `pytest -m cuda`; `validate --ep cuda` on fp16 / bf16 / int4
# builds of the tiny models and SmolLM2-135M; `bench --ep cuda` of the fp16 / int4 builds against PyTorch eager
# (fp16, same GPU), and the onnxruntime-genai builder's CUDA fp16 / int4 exports when its builder is importable.
# Without a GPU it says so in one line and stops after the placement steps. Steps never stop the script:
# each one's exit code is recorded in the results file.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="$(mkdir -p "${1:-gpu-results}" && cd "${1:-gpu-results}" && pwd)"
PY="${PYTHON:-python}"
RESULTS="$OUT/results.md"
LOGS="$OUT/logs"
TINY="${TINY:-tiny-llama tiny-alibi tiny-mixtral tiny-mla}"  # TINY="tiny-llama" for a quicker run
mkdir -p "$LOGS" "$OUT/builds"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "$*" | tee -a "$RESULTS"; }

# step NAME CMD...: runs CMD with its output in logs/NAME.log; one results line with the exit code and the
# log's last line (the command's own one-line verdict)
step() {
    local name="$1"; shift
    local start end rc
    start=$(date +%s)
    "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    end=$(date +%s)
    say "| $name | $rc | $((end - start)) s | $(grep -v '^\s*$' "$LOGS/$name.log" | tail -n 1 | cut -c1-220 | tr '|' '/') |"
    return 0
}

build() {  # build NAME SPEC ARGS...: a build folder under builds/ (reused when it exists)
    local name="$1" spec="$2"; shift 2
    if [ -f "$OUT/builds/$name/model.onnx" ]; then echo "reused $OUT/builds/$name"; return 0; fi
    "$PY" -m yamlllm_export build "$spec" -o "$OUT/builds/$name" --overwrite "$@"
}

: >"$RESULTS"
say "# CUDA run, $(date -u +%Y-%m-%dT%H:%MZ)"
say ""
say "- machine: $(uname -n), $(nproc) CPU cores"
say "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)"
say "- $("$PY" -c 'import onnxruntime as o, torch; print("onnxruntime", o.__version__, "| providers", ",".join(o.get_available_providers()), "| torch", torch.__version__, "| torch.cuda", torch.cuda.is_available())')"
say ""
say "## Placement (ORT's CUDA provider, no kernel run)"
say ""
say "| step | exit | time | last line |"
say "|---|---|---|---|"
step "placement-tests" "$PY" -m pytest -q -p no:xdist -o addopts= tests/test_cuda_placement.py
for model in $TINY; do
    for dtype in float16 bfloat16; do
        step "build-$model-$dtype" build "$model-$dtype" "models/$model.yaml" --dtype "$dtype"
        step "placement-$model-$dtype" "$PY" -m yamlllm_export validate "$OUT/builds/$model-$dtype" --cuda-placement
    done
done
for quant in int4 int8; do
    step "build-tiny-llama-$quant" build "tiny-llama-$quant" models/tiny-llama.yaml --dtype float16 --quant "$quant"
    step "placement-tiny-llama-$quant" "$PY" -m yamlllm_export validate "$OUT/builds/tiny-llama-$quant" --cuda-placement
done
step "build-tiny-llama-float32" build "tiny-llama-float32" models/tiny-llama.yaml
step "placement-tiny-llama-float32 (expected: exit 1, says --dtype float16)" "$PY" -m yamlllm_export validate "$OUT/builds/tiny-llama-float32" --cuda-placement

GPU="$("$PY" -c 'from yamlllm_export.runtime.session import availability as a; c = a("cuda"); print("" if c.usable else c.reason)')"
if [ -n "$GPU" ]; then
    say ""
    say "No usable GPU here ($GPU): pytest -m cuda, validate --ep cuda and the CUDA benchmark need one; only the placement steps ran."
    exit 0
fi

say ""
say "## On the GPU"
say ""
say "| step | exit | time | last line |"
say "|---|---|---|---|"
step "pytest-m-cuda" "$PY" -m pytest -q -p no:xdist -o addopts= -m cuda
for model in $TINY; do
    for dtype in float16 bfloat16; do
        step "validate-cuda-$model-$dtype" "$PY" -m yamlllm_export validate "$OUT/builds/$model-$dtype" --ep cuda --report "$OUT/parity/$model-$dtype"
    done
done
step "validate-cuda-tiny-llama-int4" "$PY" -m yamlllm_export validate "$OUT/builds/tiny-llama-int4" --ep cuda --report "$OUT/parity/tiny-llama-int4"

# SmolLM2-135M-Instruct (tests/smollm2.py: its cached Hugging Face folder), imported once
SMOL_HF="$("$PY" -c 'import sys; sys.path.insert(0, "tests"); import smollm2; print(smollm2.hf_dir())' 2>"$LOGS/smollm2-cache.log" | tail -n 1)"
if [ -n "$SMOL_HF" ]; then
    [ -f "$OUT/builds/smollm2.yaml" ] || "$PY" -m yamlllm_export import-hf "$SMOL_HF" -o "$OUT/builds/smollm2.yaml" >"$LOGS/smollm2-import.log" 2>&1
    for variant in "float16" "bfloat16" "int4"; do
        args=(--dtype "$variant" --weights "$SMOL_HF")
        [ "$variant" = int4 ] && args=(--dtype float16 --quant int4 --weights "$SMOL_HF")
        step "build-smollm2-$variant" build "smollm2-$variant" "$OUT/builds/smollm2.yaml" "${args[@]}"
        step "validate-cuda-smollm2-$variant" "$PY" -m yamlllm_export validate "$OUT/builds/smollm2-$variant" --ep cuda --report "$OUT/parity/smollm2-$variant"
    done
    # decode and prefill against PyTorch eager in the build's dtype on the same GPU, alternated rounds
    step "bench-cuda-smollm2-fp16-vs-eager" "$PY" -m yamlllm_export bench "$OUT/builds/smollm2-float16" --ep cuda --backend ort --backend eager --out "$OUT/bench/smollm2-float16"
    step "bench-cuda-smollm2-int4" "$PY" -m yamlllm_export bench "$OUT/builds/smollm2-int4" --ep cuda --backend ort --out "$OUT/bench/smollm2-int4"
    if "$PY" -c 'import onnxruntime_genai.models.builder' >/dev/null 2>&1; then
        for precision in fp16 int4; do
            step "builder-cuda-$precision" "$PY" -m onnxruntime_genai.models.builder -i "$SMOL_HF" -o "$OUT/builds/genai-$precision" -p "$precision" -e cuda
            step "bench-cuda-builder-$precision" "$PY" -m yamlllm_export bench "$OUT/builds/genai-$precision" --ep cuda --backend ort --out "$OUT/bench/genai-$precision"
        done
    else
        say "| builder | - | - | onnxruntime_genai.models.builder not importable: no builder rows |"
    fi
    for report in "$OUT"/bench/*/bench.md; do
        [ -f "$report" ] && { say ""; say "### $(basename "$(dirname "$report")")"; cat "$report" >>"$RESULTS"; }
    done
else
    say "| smollm2 | - | - | SmolLM2's cache could not be made (logs/smollm2-cache.log) |"
fi
say ""
say "Logs: $LOGS; parity reports: $OUT/parity; benchmark reports: $OUT/bench"
