#!/usr/bin/env bash
# Idle scheduler memory and CPU: starts `mailroom run` with a config of one nightly job and
# no sandbox (what a production install looks like between runs), waits, and prints its
# resident memory, peak, CPU ticks used over the measured window and thread count.
#
# Usage: benches/scripts/idle_scheduler.sh [BINARY] [SECONDS]
#   BINARY   default: target/release/mailroom (build it with `cargo build --release`)
#   SECONDS  default: 60
set -euo pipefail
binary=$(realpath "${1:-target/release/mailroom}")
seconds=${2:-60}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/config.toml" <<'TOML'
data_dir = "data"

[sandbox]
enabled = false

[server]
listen = "127.0.0.1:0"

[[jobs]]
name = "nightly-compact"
schedule = "0 3 * * *"
steps = [{ type = "compact", keep_days = 7 }]
TOML
cd "$dir"
"$binary" run --log-format json > run.log 2>&1 &
pid=$!
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(ticks)
sleep "$seconds"
after=$(ticks)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
threads=$(ls "/proc/$pid/task" | wc -l)
printf 'idle scheduler after %d s: resident %.1f MB, peak %.1f MB, CPU ticks in the last %d s: %d, threads: %d\n' \
  "$((seconds + 5))" "$(echo "$rss / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)" "$seconds" "$((after - before))" "$threads"
kill -TERM "$pid"
wait "$pid" || true
