#!/usr/bin/env bash
# Serve the converted SmolLM2-135M with vLLM's OpenAI-compatible server on CPU (docs/vllm.md).
#
#   deploy/vllm/serve.sh [--port PORT] [--model DIR] [-- extra vLLM flags...]
#
# Starts the server in its own process group, waits until GET /health answers 200 (prints
# "vLLM ready: http://HOST:PORT/v1"), then stays in the foreground until the server exits.
# SIGINT/SIGTERM (or the caller going away) stop the server and everything it spawned.
# Exits non-zero, with the end of the server's output, when the server dies or is not healthy
# within VLLM_START_TIMEOUT_S (240 s).
#
# Environment: VLLM_VENV (.venv-vllm), VLLM_MODEL_DIR (.nalar/models/smollm2-135m),
# VLLM_HOST (127.0.0.1), VLLM_PORT (8100), VLLM_SERVED_MODEL_NAME (smollm2),
# VLLM_MAX_MODEL_LEN (2048), VLLM_CPU_KVCACHE_SPACE (GiB, 2), VLLM_START_TIMEOUT_S (240).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${VLLM_VENV:-$ROOT/.venv-vllm}
MODEL=${VLLM_MODEL_DIR:-$ROOT/.nalar/models/smollm2-135m}
HOST=${VLLM_HOST:-127.0.0.1}
PORT=${VLLM_PORT:-8100}
NAME=${VLLM_SERVED_MODEL_NAME:-smollm2}
TIMEOUT=${VLLM_START_TIMEOUT_S:-240}
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done

if [ ! -x "$VENV/bin/python" ]; then
  echo "serve.sh: no vLLM environment at $VENV (run: make vllm)" >&2; exit 2
fi
if [ ! -f "$MODEL/config.json" ]; then
  echo "serve.sh: no converted model at $MODEL (run: make vllm)" >&2; exit 2
fi

# Offline: the checkpoint is local; nothing may reach for the Hugging Face hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export PYTHONUNBUFFERED=1

# `vllm serve` fails here (importlib.metadata.version("vllm"): the distribution is vllm-cpu),
# so start the API server module, which takes the same flags.
# --enforce-eager: bf16 under torch.compile gave wrong text on CPU (and eager starts 3-4x
# faster). With eager, vLLM runs its own CPU kernels for every op ("custom_ops": ["all"]);
# in bf16 its rotary_embedding kernel derails prompts past ~32 tokens ("What is the capital of
# France?" as a 37-token chat prompt answers "L'Étoile, la Marseillaise, ..."), so that one
# op runs as plain torch ("-rotary_embedding"): same speed, same text as fp32.
CMD=("$VENV/bin/python" -m vllm.entrypoints.openai.api_server
     --model "$MODEL" --served-model-name "$NAME"
     --host "$HOST" --port "$PORT"
     --enforce-eager --dtype bfloat16 --max-model-len "${VLLM_MAX_MODEL_LEN:-2048}"
     --compilation-config '{"custom_ops": ["all", "-rotary_embedding"]}'
     --enable-prefix-caching --enable-prompt-tokens-details
     "${EXTRA[@]}")

PARENT=$PPID
echo "serve.sh: ${CMD[*]}"
setsid "${CMD[@]}" &
PID=$!

stop() {
  trap - INT TERM EXIT
  if kill -0 "$PID" 2>/dev/null; then
    kill -TERM -- "-$PID" 2>/dev/null || kill -TERM "$PID" 2>/dev/null
    for _ in $(seq 1 150); do  # up to 15 s for a clean shutdown
      kill -0 "$PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$PID" 2>/dev/null || true
  fi
  # EngineCore and its helpers share the process group; take any straggler down too
  kill -KILL -- "-$PID" 2>/dev/null || true
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap 'stop' EXIT

healthy() {
  "$VENV/bin/python" - "$HOST" "$PORT" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/health", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

start=$(date +%s)
until healthy; do
  if ! kill -0 "$PID" 2>/dev/null; then
    wait "$PID"; rc=$?
    echo "serve.sh: the vLLM server exited with code $rc while starting" >&2
    exit $(( rc == 0 ? 1 : rc ))
  fi
  if ! kill -0 "$PARENT" 2>/dev/null; then exit 1; fi
  if [ $(( $(date +%s) - start )) -ge "$TIMEOUT" ]; then
    echo "serve.sh: the vLLM server was not healthy within ${TIMEOUT} s" >&2
    exit 1
  fi
  sleep 1 & wait $!
done
echo "vLLM ready: http://$HOST:$PORT/v1 (model $NAME, started in $(( $(date +%s) - start )) s)"

# Stay with the server; leave (and stop it) if it dies or whoever started us goes away.
while kill -0 "$PID" 2>/dev/null; do
  if ! kill -0 "$PARENT" 2>/dev/null; then
    echo "serve.sh: parent $PARENT is gone; stopping the server" >&2
    exit 1
  fi
  sleep 1 & wait $!
done
wait "$PID"
exit $?
