#!/usr/bin/env bash
# CPU per SMTP+STARTTLS probe: vantage's engine and blackbox_exporter's tcp
# prober side by side, against the same server.
#
#   tests/bench/compare-blackbox.sh [COUNT] [CONCURRENCY] [HOST:PORT]
#
# Without HOST:PORT the testkit server (`vantage-bench serve-smtp`) is
# started on loopback. Needs `prometheus-blackbox-exporter` (Debian) and a
# built `vantage-bench` (VANTAGE_BENCH, default target/release/vantage-bench).
# blackbox_exporter is asked over HTTP as Prometheus would (/probe), so its
# figure includes serving the request; vantage runs with --no-posture (one
# connection per probe, as blackbox makes).
set -euo pipefail

count=${1:-5000}
concurrency=${2:-50}
target=${3:-}
bench=${VANTAGE_BENCH:-target/release/vantage-bench}
exporter=$(command -v prometheus-blackbox-exporter || command -v blackbox_exporter || true)
[ -x "$bench" ] || { echo "no $bench: cargo build --release -p vantage-tests --bin vantage-bench" >&2; exit 2; }
[ -n "$exporter" ] || { echo "no blackbox_exporter: apt-get install prometheus-blackbox-exporter" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    exec 3>&- 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if [ -z "$target" ]; then
    mkfifo "$work/stdin"
    "$bench" serve-smtp <"$work/stdin" >"$work/port" &
    pids+=($!)
    exec 3>"$work/stdin" # held open: the server serves until it closes
    for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
    target="127.0.0.1:$(head -1 "$work/port")"
fi

cat >"$work/blackbox.yml" <<'EOF'
modules:
  smtp_starttls:
    prober: tcp
    timeout: 15s
    tcp:
      query_response:
        - expect: "^220 "
        - send: "EHLO vantage.invalid\r"
        - expect: "^250[ -]STARTTLS"
        - send: "STARTTLS\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO vantage.invalid\r"
        - expect: "^250 "
        - send: "QUIT\r"
      tls_config:
        insecure_skip_verify: true
EOF
port=$((20000 + RANDOM % 20000))
"$exporter" --config.file="$work/blackbox.yml" --web.listen-address="127.0.0.1:$port" \
    --log.level=warn 2>"$work/blackbox.log" &
bb=$!
pids+=("$bb")
url="http://127.0.0.1:$port/probe?module=smtp_starttls&target=$target"
for _ in $(seq 100); do curl -fs "$url" >/dev/null 2>&1 && break; sleep 0.1; done
if ! curl -fs "$url" | grep -q '^probe_success 1'; then
    echo "blackbox_exporter cannot probe $target:" >&2
    curl -s "$url&debug=true" | tail -20 >&2
    exit 1
fi

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks "$bb")
start=$(date +%s.%N)
seq "$count" | xargs -P "$concurrency" -I{} curl -s -o "$work/out.{}" "$url"
end=$(date +%s.%N)
after=$(ticks "$bb")
ok=$(grep -l '^probe_success 1' "$work"/out.* | wc -l)
rm -f "$work"/out.*
rss=$(awk '/VmHWM/ {print $2}' "/proc/$bb/status")
echo "blackbox_exporter $("$exporter" --version 2>&1 | head -1 | awk '{print $3}'): $count probes of $target, concurrency $concurrency"
echo "  succeeded         $ok"
awk -v s="$start" -v e="$end" -v n="$count" 'BEGIN { printf "  throughput        %.0f probes/s\n", n / (e - s) }'
awk -v t=$((after - before)) -v hz="$hz" -v n="$count" 'BEGIN { printf "  prober CPU        %.3f ms/probe\n", t * 1000 / hz / n }'
awk -v k="$rss" 'BEGIN { printf "  prober peak RSS   %.1f MiB\n", k / 1024 }'
echo
"$bench" probe --target "$target" --tls-name mx.bench.test --no-posture \
    --count "$count" --concurrency "$concurrency"
