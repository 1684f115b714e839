#!/usr/bin/env bash
# OIDC token exchange cost (issue 13): milliseconds per `POST /api/v1/oidc/exchange`
# with a warm JWKS, side by side in the same run with a plain API-token request
# (`GET /api/v1/me`) of the same server. A real identity provider (oauth2-mock-server,
# crates/server/tests/oidc) issues the JWTs over HTTPS. See bench/README.md.
#
#   bench/oidc-exchange.sh [ROUNDS]     # default 3; medians over rounds
#
# Each round measures, one request at a time on one kept-alive connection:
#   me        GET /api/v1/me with an API token (the floor: authentication only)
#   exchange  an exchange of a JWT never seen before (verify, issue and store a token,
#             audit) — every CI job's or pod's first call
#   replay    the same JWT again (verify, find the token by hash, audit)
#
# Environment:
#   REQUESTS   requests per kind and round (default 300)
#   RESULTS    JSON results file (default target/bench/oidc-exchange.json)
#   BUILD=0    use target/release/regkeeper as it is
#   KEEP_WORK  keep the temporary directory (logs, keys)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${1:-3}
REQUESTS=${REQUESTS:-300}
RESULTS=${RESULTS:-$ROOT/target/bench/oidc-exchange.json}
ADMIN_TOKEN=rk_bench_oidc_exchange_admin_token
say() { printf '==> %s\n' "$*" >&2; }

command -v openssl >/dev/null || { say "installing openssl"; apt-get install -y -q openssl >/dev/null; }
command -v node >/dev/null || scripts/test --setup-only
[[ -f crates/server/tests/oidc/node_modules/oauth2-mock-server/package.json ]] ||
    npm ci --prefix crates/server/tests/oidc --no-audit --no-fund --loglevel=error >/dev/null
if [[ ${BUILD:-1} != 0 ]]; then
    say "cargo build --release --bin regkeeper"
    cargo build --release --bin regkeeper -q
fi
BIN=$ROOT/target/release/regkeeper

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n ${KEEP_WORK:-} ]] && say "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

# A CA, the provider's certificate for 127.0.0.1, and its ES256 signing key (PKCS#8).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=bench-ca -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 1 -extfile "$WORK/san.ext" -out "$WORK/server.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/signing.pem" 2>/dev/null

mkfifo "$WORK/provider.in"
(cd crates/server/tests/oidc && exec node issuer.mjs "$WORK/server.pem" "$WORK/server.key" \
    "$WORK/signing.pem" bench-key <"$WORK/provider.in" >"$WORK/provider.log" 2>&1) &
PIDS+=($!)
exec 3>"$WORK/provider.in" # keeps the provider's stdin open
for _ in $(seq 100); do grep -q '^listening ' "$WORK/provider.log" && break; sleep 0.1; done
ISSUER=$(sed -n 's/^listening //p' "$WORK/provider.log")
[[ -n $ISSUER ]] || { cat "$WORK/provider.log" >&2; exit 1; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
REGKEEPER_DATA_DIR="$WORK/data" REGKEEPER_BOOTSTRAP_TOKEN=$ADMIN_TOKEN \
    REGKEEPER_OUTBOUND_ALLOW_NETWORKS=127.0.0.0/8,::1/128 REGKEEPER_OUTBOUND_CA_FILE="$WORK/ca.pem" \
    REGKEEPER_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do curl -sf "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

export REGKEEPER_URL=$URL REGKEEPER_TOKEN=$ADMIN_TOKEN
printf '{"Statement":[{"Effect":"Allow","Action":"credentials:Resolve","Resource":"rk:~admin:credential/*"}]}' >"$WORK/policy.json"
"$BIN" roles create builder --workspace '~admin' --policy-file "$WORK/policy.json" >/dev/null
"$BIN" roles trust add builder --workspace '~admin' --issuer "$ISSUER" --audience regkeeper \
    --subject 'repo:acme/app:*' --claim repository_owner=acme >/dev/null

say "oidc-exchange: $ROUNDS rounds of $REQUESTS requests per kind (issuer $ISSUER)"
python3 bench/oidc-exchange/measure.py "$URL" "$ISSUER" "$WORK/ca.pem" "$ADMIN_TOKEN" \
    "$ROUNDS" "$REQUESTS" "$RESULTS"
