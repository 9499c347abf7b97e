#!/usr/bin/env bash
# trayllm beside its peers, in one run on one machine: the same client (`trayllm bench load --url`), the same
# prompts, and the same weights for each server, one server at a time, printed as one Markdown table for
# docs/BENCHMARKS.md.
#
#   trayllm            its own daemon (default settings: the CPU default path), over loopback TCP
#   llama.cpp          llama-cpp-python's server on the embedded GGUF
#   transformers serve `transformers serve --continuous-batching` on the fp32 safetensors trayllm converted
#                      from that GGUF (converted here first if the cache lacks it)
#
# The peers stay out of trayllm's dependencies, each in its own venv under $PEERS_DIR (default /work/peers):
#   python3 -m venv $PEERS_DIR/llama && CMAKE_ARGS="$LLAMA_CMAKE_ARGS" $PEERS_DIR/llama/bin/pip install \
#       'llama-cpp-python[server]'          (builds llama.cpp from source: about 10 minutes on 2 cores)
#   where, on a CPU with AMX (Sapphire Rapids and later), LLAMA_CMAKE_ARGS builds without AMX: the native build's
#   AMX kernels segfaulted on this project's machine on any prompt longer than one token (llama-cpp-python
#   0.3.36), and the same CPU features without them do not:
#       LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
#         -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
#   (elsewhere leave it empty: the native build)
#   python3 -m venv $PEERS_DIR/tserve && $PEERS_DIR/tserve/bin/pip install torch==2.13.0 requests \
#       "transformers[serving]==$(grep -Po '^transformers==\K.*' requirements/run.txt)"
#       (transformers' CLI imports requests, which its serving extra does not pull in)
# A peer whose venv is missing is skipped with a note.
#
# Usage, from the repository root (with .venv set up by `make`):
#   scripts/bench_peers.sh                     # the full comparison: concurrency 1 and 8, 8 requests, 128 tokens
#   scripts/bench_peers.sh -n 2 -t 16          # a smoke run that proves every server starts and answers
#   scripts/bench_peers.sh -s llama,tserve     # only some servers (names: trayllm, llama, tserve)
# Options: -n requests per level (8), -t max tokens (128), -c concurrency levels (1,8), -s servers
# (trayllm,llama,tserve), -p base port (18400; the servers take the ports after it). Temperature is 0 throughout.
# Run it on an otherwise idle machine: anything else on the CPUs skews every figure.
# Each server's log and JSON report stay in a temporary folder, named at the end. Nothing is downloaded:
# every server reads local files only (HF_HUB_OFFLINE=1).
set -euo pipefail

requests=8 max_tokens=128 levels=1,8 servers=trayllm,llama,tserve port=18400
while getopts "n:t:c:s:p:h" opt; do
    case $opt in
    n) requests=$OPTARG ;;
    t) max_tokens=$OPTARG ;;
    c) levels=$OPTARG ;;
    s) servers=$OPTARG ;;
    p) port=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
py=$root/.venv/bin/python
trayllm=$root/.venv/bin/trayllm
peers=${PEERS_DIR:-/work/peers}
work=$(mktemp -d /tmp/bench_peers.XXXXXX)
chmod 700 "$work"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# trayllm: a private daemon (own socket, state, config: default settings), sharing the converted-weights cache
export XDG_RUNTIME_DIR=$work/run XDG_STATE_HOME=$work/state XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data
mkdir -m 700 -p "$XDG_RUNTIME_DIR" "$XDG_STATE_HOME" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME"
threads=$(nproc)
server_pid=

stop_server() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid"
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=
}
trap stop_server EXIT

# wait_ready PROBE_URL LOG [KEY_FILE]: until PROBE_URL answers 2xx (with the bearer key in KEY_FILE, if given);
# fails, showing the log's tail, if the server exits first or takes over 10 minutes
probe='
import sys, urllib.request
from pathlib import Path
request = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2 and Path(sys.argv[2]).is_file():
    request.add_header("Authorization", "Bearer " + Path(sys.argv[2]).read_text().strip())
urllib.request.urlopen(request, timeout=2)
'
wait_ready() {
    local deadline=$((SECONDS + 600))
    until "$py" -c "$probe" "$1" "${3:-}" 2>/dev/null; do
        if ! kill -0 "$server_pid" 2>/dev/null || ((SECONDS > deadline)); then
            echo "bench_peers: the server did not come up; the end of $2:" >&2
            tail -n 20 "$2" >&2
            return 1
        fi
        sleep 0.5
    done
}

# bench NAME URL [bench options]: one `trayllm bench load --url` run, its JSON kept as $work/NAME.json
bench() {
    local name=$1 url=$2
    shift 2
    echo "bench_peers: measuring $name at $url" >&2
    "$trayllm" bench load --url "$url" --concurrency "$levels" -n "$requests" --max-tokens "$max_tokens" \
        --timeout 600 --json "$@" >"$work/$name.json"
}

# the embedded GGUF, and its fp32 safetensors conversion (made now if the cache lacks it)
read -r gguf converted < <("$py" - <<'EOF'
import torch

from trayllm.config import load_settings
from trayllm.engine import models

settings = load_settings({})
source = models.resolve_source(settings)
digest = models.content_digest(source.weight_files, settings.cache_path)
converted = models.converted_dir(source, digest, settings.cache_path, lambda _: None, dtype=torch.float32)
print(source.path, converted)
EOF
)
[[ -f $gguf && -d $converted ]] || { echo "bench_peers: could not find the GGUF and its conversion" >&2; exit 1; }

for server in ${servers//,/ }; do
    port=$((port + 1))
    url=http://127.0.0.1:$port/v1
    log=$work/$server.log
    probe_url=$url/models key_file=
    case $server in
    trayllm)
        name=trayllm key_file=$work/token probe_url=http://127.0.0.1:$port/readyz
        TRAYLLM_TOKEN_FILE=$key_file "$trayllm" daemon --listen "127.0.0.1:$port" >"$log" 2>&1 &
        extra=(--api-key-file "$key_file")
        ;;
    llama)
        name=llama.cpp
        if [[ ! -x $peers/llama/bin/python ]]; then echo "bench_peers: skip $name: no $peers/llama" >&2; continue; fi
        # --interrupt_requests False: by default a new request cuts off the one streaming, which would count
        # as a short reply; this way requests wait their turn (the server decodes one at a time)
        "$peers/llama/bin/python" -m llama_cpp.server --model "$gguf" --n_ctx 2048 --n_threads "$threads" \
            --interrupt_requests False --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
        extra=()
        ;;
    tserve)
        name="transformers serve"
        if [[ ! -x $peers/tserve/bin/transformers ]]; then echo "bench_peers: skip $name: no $peers/tserve" >&2; continue; fi
        mkdir -p "$work/hf" # an empty hub cache: /v1/models fails without one, and nothing else is read from it
        HF_HUB_CACHE=$work/hf "$peers/tserve/bin/transformers" serve --continuous-batching --device cpu \
            --host 127.0.0.1 --port "$port" "$converted" >"$log" 2>&1 &
        extra=(--model "$converted")
        ;;
    *) echo "bench_peers: unknown server $server (trayllm, llama, tserve)" >&2; exit 2 ;;
    esac
    server_pid=$!
    # a server that fails is reported and left out of the table; the others still run
    if wait_ready "$probe_url" "$log" "$key_file" && ! bench "$name" "$url" "${extra[@]}"; then
        echo "bench_peers: $name failed; the end of $log:" >&2
        tail -n 20 "$log" >&2
        rm -f "$work/$name.json"
    fi
    stop_server
done

"$py" - "$work" "$requests" "$max_tokens" <<'EOF'
import json
import sys
from pathlib import Path

work, requests, max_tokens = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
print(f"{requests} streamed requests per level, max_tokens {max_tokens}, temperature 0; same prompts for every server")
print()
print("| server | concurrency | errors | first token p50 (ms) | decode tok/s per stream | aggregate decode tok/s |")
print("|---|---:|---:|---:|---:|---:|")
for report in sorted(work.glob("*.json"), key=lambda p: p.stat().st_mtime):
    for lv in json.loads(report.read_text())["levels"]:
        cells = [lv[k] for k in ("concurrency", "errors", "first_token_p50_ms",
                                 "decode_tokens_per_second_per_stream", "aggregate_decode_tokens_per_second")]
        print("| " + " | ".join([report.stem] + ["–" if c is None else str(c) for c in cells]) + " |")
EOF
echo "bench_peers: logs and JSON reports in $work" >&2
