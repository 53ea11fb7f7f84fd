#!/usr/bin/env bash
# mailroom beside dlt on the same Smile-shaped API, in one run: starts `mailroom sandbox`
# (Smile without a rate limit), installs dlt into a throwaway virtualenv, then alternates
# the two tools for ROUNDS rounds, each reading every Smile customer (with its VIP status
# and tier) and writing Parquet on local disk:
#   mailroom: `mailroom run-job` of one extract step into the local Delta warehouse;
#   dlt:      a REST resource paging /customers by cursor, `pipeline.run` into the
#             filesystem destination as Parquet.
# Each tool's peak resident memory is its process's maximum RSS (GNU time's %M), split into
# anonymous and file-backed memory; the script prints each round and the ratio of the
# median peaks.
#
# Usage: benches/scripts/dlt_compare.sh [BINARY] [PEOPLE] [ROUNDS] [PORT]
#   defaults: target/release/mailroom, 263000 (about 200,000 Smile customers), 2, 18104.
#   Needs python3 with venv, network access to PyPI, and /usr/bin/time.
set -euo pipefail
binary=$(realpath "${1:-target/release/mailroom}")
people=${2:-263000}
rounds=${3:-2}
port=${4:-18104}
dlt_version=${DLT_VERSION:-1.31.0}
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"

echo "installing dlt $dlt_version into a throwaway virtualenv..."
python3 -m venv venv
venv/bin/pip install -q "dlt[parquet]==$dlt_version" requests
venv/bin/python -c 'import dlt; print("dlt", dlt.__version__)'

"$binary" sandbox --listen "127.0.0.1:$port" --customers "$people" --smile-rate-limit 0 > sandbox.out 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 600); do curl -sf -o /dev/null "$base/_sandbox/state" && break; sleep 0.5; done

cat > config.toml <<TOML
data_dir = "data"

[sandbox]
enabled = true
url = "$base"

[sources.smile]
requests_per_second = 0

[[jobs]]
name = "smile-customers"
schedule = "0 3 * * *"
steps = [{ type = "extract", source = "smile", streams = ["customers"] }]
TOML

cat > smile_dlt.py <<'PY'
"""Every Smile customer, with VIP status and tier, into Parquet files by dlt."""
import sys

import dlt
import requests

base, out = sys.argv[1], sys.argv[2]


@dlt.resource(name="smile_customers", write_disposition="append")
def customers():
    session = requests.Session()
    session.headers["Authorization"] = "Bearer sandbox"
    cursor = None
    while True:
        params = {"limit": 250, "include": "vip_status,vip_status.vip_tier"}
        if cursor:
            params["cursor"] = cursor
        answer = session.get(f"{base}/smile/v1/customers", params=params, timeout=60)
        answer.raise_for_status()
        body = answer.json()
        yield body["customers"]
        cursor = body["metadata"].get("next_cursor")
        if not cursor:
            return


pipeline = dlt.pipeline(
    pipeline_name="smile_compare",
    destination=dlt.destinations.filesystem(bucket_url=f"file://{out}/files"),
    dataset_name="smile",
    pipelines_dir=f"{out}/pipelines",
)
pipeline.run(customers(), loader_file_format="parquet")
rows = pipeline.last_trace.last_normalize_info.row_counts.get("smile_customers", 0)
print(f"rows={rows}")
PY

export RUNTIME__DLTHUB_TELEMETRY=false
# Prints "<peak kB> <seconds> <anonymous kB> <file-backed kB>" of one command: the peak and
# time from GNU time, the split of resident memory into anonymous (heap, stacks) and
# file-backed (the program's own code and libraries) sampled from /proc every 20 ms. Its
# own output goes to last.out.
measure() {
  /usr/bin/time -f '%M %e' -o time.out "$@" > last.out 2>&1 &
  local timer=$! child= anon=0 file=0 a f
  while kill -0 "$timer" 2>/dev/null; do
    [ -z "$child" ] && child=$(pgrep -P "$timer" | head -1 || true)
    if [ -n "$child" ] && read -r a f < <(awk '/RssAnon/ {a = $2} /RssFile/ {f = $2} END {print a + 0, f + 0}' "/proc/$child/status" 2>/dev/null); then
      [ "$a" -gt "$anon" ] && anon=$a
      [ "$f" -gt "$file" ] && file=$f
    fi
    sleep 0.02
  done
  wait "$timer" || { cat last.out; exit 1; }
  echo "$(cat time.out) $anon $file"
}
show() {
  printf 'round %d: %-8s %6.1f MB peak (anonymous %5.1f MB, file-backed %5.1f MB), %6.1f s, %s rows\n' \
    "$1" "$2" "$(echo "$3 / 1024" | bc -l)" "$(echo "$5 / 1024" | bc -l)" "$(echo "$6 / 1024" | bc -l)" "$4" "$7"
}

mailroom_peaks=()
dlt_peaks=()
for round in $(seq 1 "$rounds"); do
  rm -rf data dlt-out
  read -r kb secs anon file < <(measure "$binary" --config config.toml --log-format json run-job smile-customers)
  mailroom_peaks+=("$kb")
  show "$round" mailroom "$kb" "$secs" "$anon" "$file" "$(grep -o '[0-9]* rows loaded' last.out | cut -d' ' -f1)"
  read -r kb secs anon file < <(measure venv/bin/python smile_dlt.py "$base" "$dir/dlt-out")
  dlt_peaks+=("$kb")
  show "$round" dlt "$kb" "$secs" "$anon" "$file" "$(grep -o 'rows=[0-9]*' last.out | cut -d= -f2)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
m=$(median "${mailroom_peaks[@]}")
d=$(median "${dlt_peaks[@]}")
printf 'median peak: mailroom %.1f MB, dlt %.1f MB, ratio %.2fx (target: at most 0.5x)\n' \
  "$(echo "$m / 1024" | bc -l)" "$(echo "$d / 1024" | bc -l)" "$(echo "$m / $d" | bc -l)"
