#!/usr/bin/env bash
# Benchmark pointd: start a server, create an admin key, run pointd-load
# (ping and earn at each connection count) and print the results.
#
#   bench/run.sh                      SQLite in a temporary folder
#   bench/run.sh 'postgres://…'       PostgreSQL (give it a fresh schema:
#                                     …?search_path=bench_x)
#
# Environment: CONNS (1,16,64), DURATION (10s), WARMUP (1s), ENDPOINT (both),
# ADDR (127.0.0.1:7171), WRK=1 to also run wrk with bench/earn.lua at the
# largest connection count, SERVE_ARGS for extra `pointd serve` flags,
# LOAD_ARGS for extra pointd-load flags. ENDPOINT=overload runs the overload
# benchmark instead (capacity search, then 3× capacity for 60 s; README).
# ROUNDS (1) ping/earn pairs per connection count (the median ratio of
# several moves less on a busy machine), POINTD_BIN to run a pointd binary
# built elsewhere (another commit, for a before/after comparison).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-1,16,64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
ENDPOINT=${ENDPOINT:-both}
ADDR=${ADDR:-127.0.0.1:7171}
SERVE_ARGS=${SERVE_ARGS:-}
ROUNDS=${ROUNDS:-1}

work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${1:-}" ]; then
	db=(--db "$1")
	# PostgreSQL needs the key that seals phone numbers (any will do here).
	POINTD_DATA_KEY=${POINTD_DATA_KEY:-$(head -c 32 /dev/urandom | base64)}
	export POINTD_DATA_KEY
else
	db=(--data "$work/data")
fi

if [ -n "${POINTD_BIN:-}" ]; then
	cp "$POINTD_BIN" "$work/pointd"
else
	go build -o "$work/pointd" ./cmd/pointd
fi
key=$("$work/pointd" keys create --role admin "${db[@]}" | tail -n 1)

# shellcheck disable=SC2086
"$work/pointd" serve --addr "$ADDR" "${db[@]}" $SERVE_ARGS >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
	curl -fsS "http://$ADDR/readyz" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
	sleep 0.05
done
curl -fsS "http://$ADDR/readyz" >/dev/null || { echo "server not ready" >&2; cat "$work/serve.log"; exit 1; }

echo "pointd on $ADDR, ${db[*]}; $(nproc) CPUs; $(go version)"
go run ./cmd/pointd-load --target "http://$ADDR" --admin-key "$key" \
	--conns "$CONNS" --duration "$DURATION" --warmup "$WARMUP" --endpoint "$ENDPOINT" --rounds "$ROUNDS" ${LOAD_ARGS:-}

if [ "${WRK:-}" = 1 ] && command -v wrk >/dev/null; then
	c=${CONNS##*,}
	eval "$(go run ./cmd/pointd-load --target "http://$ADDR" --admin-key "$key" --setup-only)"
	export POINTD_KEY POINTD_STORE POINTD_MEMBERS POINTD_RUN
	echo
	echo "wrk -t2 -c$c -d$DURATION ping"
	POINTD_PING=1 wrk -t2 -c"$c" -d"$DURATION" --latency -s bench/earn.lua "http://$ADDR/v1/ping"
	echo
	echo "wrk -t2 -c$c -d$DURATION earn"
	wrk -t2 -c"$c" -d"$DURATION" --latency -s bench/earn.lua "http://$ADDR/v1/earns"
fi

kill -TERM "$pid"
wait "$pid" || { echo "server exit status $?" >&2; tail -20 "$work/serve.log" >&2; }
pid=
echo
"$work/pointd" verify "${db[@]}"
