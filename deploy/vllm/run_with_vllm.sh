#!/usr/bin/env bash
# Run a command (`nalar up ...`) with a vLLM server beside it: `make run LLM=vllm`.
#
#   deploy/vllm/run_with_vllm.sh COMMAND [ARGS...]
#
# Starts deploy/vllm/serve.sh in the background (its output goes to .nalar/vllm/server.log),
# waits until it is healthy, then runs COMMAND with the agent hosts pointed at it:
#   NALAR_LLM_BACKEND=openai NALAR_LLM_BASE_URL=http://127.0.0.1:$VLLM_PORT/v1
#   NALAR_LLM_MODEL=smollm2 (NALAR_LLM_API_KEY passes through if set)
# When COMMAND ends (Ctrl-C included) the server is stopped; if the server dies, COMMAND is
# stopped.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PORT=${VLLM_PORT:-8100}
NAME=${VLLM_SERVED_MODEL_NAME:-smollm2}
LOG_DIR=${VLLM_LOG_DIR:-$ROOT/.nalar/vllm}
TIMEOUT=${VLLM_START_TIMEOUT_S:-240}
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/server.log"

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "run_with_vllm: port $PORT is taken; pick another with VLLM_PORT=..." >&2; exit 1
fi

echo "run_with_vllm: starting vLLM on 127.0.0.1:$PORT (log: $LOG; takes ~30-60 s on CPU)"
# tool calls parsed, for agent loops (docs/agents.md); plain requests are not affected
VLLM_PORT=$PORT VLLM_SERVED_MODEL_NAME=$NAME VLLM_START_TIMEOUT_S=$TIMEOUT \
  "$ROOT/deploy/vllm/serve.sh" --port "$PORT" --enable-auto-tool-choice --tool-call-parser hermes \
    >"$LOG" 2>&1 &
SERVER=$!
APP_PID=

cleanup() {
  trap - INT TERM EXIT
  if [ -n "$APP_PID" ] && kill -0 "$APP_PID" 2>/dev/null; then
    kill -TERM "$APP_PID" 2>/dev/null; wait "$APP_PID" 2>/dev/null
  fi
  if kill -0 "$SERVER" 2>/dev/null; then
    echo "run_with_vllm: stopping vLLM"
    kill -TERM "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null
  fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup' EXIT

until grep -q "^vLLM ready" "$LOG" 2>/dev/null; do
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "run_with_vllm: vLLM did not start; end of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  sleep 1 & wait $!
done
grep "^vLLM ready" "$LOG"

export NALAR_LLM_BACKEND=openai
export NALAR_LLM_BASE_URL="http://127.0.0.1:$PORT/v1"
export NALAR_LLM_MODEL=$NAME
echo "run_with_vllm: NALAR_LLM_BACKEND=$NALAR_LLM_BACKEND NALAR_LLM_BASE_URL=$NALAR_LLM_BASE_URL NALAR_LLM_MODEL=$NALAR_LLM_MODEL"

# COMMAND in the foreground process group (Ctrl-C reaches it directly); watch the server.
"$@" &
APP_PID=$!
while kill -0 "$APP_PID" 2>/dev/null; do
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "run_with_vllm: the vLLM server exited; stopping. End of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    cleanup
    exit 1
  fi
  sleep 1 & wait $!
done
wait "$APP_PID"
rc=$?
APP_PID=
exit $rc
