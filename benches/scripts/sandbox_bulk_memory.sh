#!/usr/bin/env bash
# The sandbox's memory under a Shopify bulk export: starts `mailroom sandbox` with N
# customers, runs the orders export mailroom's first load asks for (orders with their line
# items), waits for it, downloads the result, and prints the result's size, the times and
# the sandbox's resident memory and peak (VmHWM) from /proc.
#
# Four concurrent page requests come first, with the peak they left.
#
# Usage: benches/scripts/sandbox_bulk_memory.sh [BINARY] [CUSTOMERS] [PORT]
#   defaults: target/release/mailroom, 100000, 18103. Needs curl and python3.
set -euo pipefail
binary=$(realpath "${1:-target/release/mailroom}")
customers=${2:-100000}
port=${3:-18103}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
cd "$dir"
"$binary" sandbox --listen "127.0.0.1:$port" --customers "$customers" --bulk-export-secs 0 > sandbox.out 2>&1 &
pid=$!
for _ in $(seq 1 600); do curl -sf -o /dev/null "http://127.0.0.1:$port/_sandbox/state" && break; sleep 0.5; done
url="http://127.0.0.1:$port/shopify/admin/api/2026-10/graphql.json"
graphql() {
  curl -sf -H 'X-Shopify-Access-Token: sandbox' -H 'Content-Type: application/json' "$url" -d "$1"
}
# Four page requests at once, each walking every order of the world for one page.
page='{"query": "{ orders(first: 100, sortKey: UPDATED_AT, reverse: true) { edges { node { id updatedAt lineItems(first: 2) { edges { node { id } } } } } } }"}'
paged_start=$(date +%s.%N)
pages=()
check='import json, sys; assert len(json.load(sys.stdin)["data"]["orders"]["edges"]) == 100'
for _ in 1 2 3 4; do graphql "$page" | python3 -c "$check" & pages+=($!); done
for p in "${pages[@]}"; do wait "$p"; done
printf 'four concurrent pages of 100 orders in %.1f s: sandbox peak %.0f MB\n' "$(echo "$(date +%s.%N) - $paged_start" | bc)" \
  "$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$pid/status")"
query='{ orders(sortKey: UPDATED_AT) { edges { node { id legacyResourceId name email createdAt updatedAt processedAt cancelledAt displayFinancialStatus displayFulfillmentStatus totalPriceSet { shopMoney { amount currencyCode } } customer { id } lineItems { edges { node { id title sku quantity originalUnitPriceSet { shopMoney { amount currencyCode } } } } } } } } }'
body=$(python3 -c 'import json, sys; print(json.dumps({"query": "mutation($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: true) { bulkOperation { id } userErrors { message } } }", "variables": {"q": sys.argv[1]}}))' "$query")
start=$(date +%s.%N)
id=$(graphql "$body" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"])')
while :; do
  answer=$(graphql "{\"query\": \"{ bulkOperation(id: \\\"$id\\\") { status url objectCount rootObjectCount fileSize } }\"}")
  status=$(echo "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["bulkOperation"]["status"])')
  [ "$status" = COMPLETED ] && break
  sleep 0.2
done
built=$(date +%s.%N)
result=$(echo "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["bulkOperation"]["url"])')
downloaded=$(curl -sf -o /dev/null -w '%{size_download}' "$result")
done_at=$(date +%s.%N)
echo "$answer" | python3 -c 'import json, sys; d = json.load(sys.stdin)["data"]["bulkOperation"]; print("{} orders, {} lines in all, {:.1f} MB".format(d["rootObjectCount"], d["objectCount"], int(d["fileSize"]) / 1e6))'
printf 'export built in %.1f s, downloaded (%s bytes) in %.1f s\n' "$(echo "$built - $start" | bc)" "$downloaded" "$(echo "$done_at - $built" | bc)"
printf 'sandbox (%s customers): resident %.0f MB, peak %.0f MB\n' "$customers" \
  "$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$pid/status")" "$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$pid/status")"
