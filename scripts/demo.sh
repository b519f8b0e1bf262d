#!/usr/bin/env bash
# `make demo`: validate the reference manifests, then plan, apply and plan again against a server; then
# `reconcile watch` runs in the background while two users sign up, converges them on its own and carries what
# they write to analytics (fanIn: triggered); the users' devices sync three weeks of documents, and the demo
# ends with the analytics panel's address and sign-in.
# The server is $COUCHDB_URL (with COUCHDB_USER / COUCHDB_PASSWORD) when set, else couchsim started here
# in the background and stopped on exit. `make demo` installs everything first, so on a fresh clone it
# fails only when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
MANIFESTS=manifests/

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi

# Whatever this script started in the background (couchsim, watch) stops with it, however it ends.
couchsim_pid='' watch_pid=''
stop_background() {
    for pid in $watch_pid $couchsim_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap stop_background EXIT
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; "$@"; }

step "$BIN/reconcile" validate "$MANIFESTS"

if [ -z "${COUCHDB_URL:-}" ]; then
    admin_password=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(16))')
    mkdir -p .demo
    couchsim_log=.demo/couchsim.log
    # The previous run's log says "listening" too: removed before starting, so the line found below can
    # only be this process's (the shell opens the redirection in the child, after this loop may start).
    rm -f "$couchsim_log"
    # --port 0: the kernel picks a free port at bind time and couchsim prints it, so no other server can
    # take it between a check and the bind. Fewer PBKDF2 rounds than CouchDB's 600,000: instant sign-ups.
    "$BIN/python" -m couch_reconciler.couchsim --port 0 --admin "admin:$admin_password" --config chttpd_auth/iterations=1000 \
        >"$couchsim_log" 2>&1 &
    couchsim_pid=$!
    port=''
    for _ in $(seq 200); do
        port=$(sed -n 's|^couchsim listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$couchsim_log" 2>/dev/null)
        [ -n "$port" ] && break
        if ! kill -0 "$couchsim_pid" 2>/dev/null; then
            echo "couchsim could not start; see $couchsim_log" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "couchsim did not start within 20 s; see $couchsim_log" >&2
        exit 1
    fi
    export COUCHDB_URL="http://127.0.0.1:$port" COUCHDB_USER=admin COUCHDB_PASSWORD="$admin_password"
    # couchsim replicates to itself at the URL we reach it at (a real CouchDB may need another one).
    export COUCHDB_REPLICATION_URL="$COUCHDB_URL"
    echo "couchsim is running on $COUCHDB_URL (log: .demo/couchsim.log)"
else
    echo "using the CouchDB at $COUCHDB_URL"
fi

# Demo-only secrets (user and replication passwords); real deployments set these from their secret store.
set -a
# shellcheck source=/dev/null
. manifests/demo.env
set +a

step "$BIN/reconcile" plan "$MANIFESTS"
step "$BIN/reconcile" apply --auto-approve "$MANIFESTS"
# --detailed-exitcode: 0 means no change left, 2 means changes (which a second plan must not find).
set +e
step "$BIN/reconcile" plan --detailed-exitcode "$MANIFESTS"
status=$?
set -e
case $status in
    0) echo "The second plan is empty: the server matches the manifests." ;;
    2) echo "The second plan still has changes: apply did not converge." >&2; exit 1 ;;
    *) exit "$status" ;;
esac

# `reconcile watch` keeps the server converged from here on: a full reconcile at start, then it follows
# `_users/_changes` and `/_db_updates` and reconciles just the users who sign up.
mkdir -p .demo
watch_log=.demo/watch.log
rm -f "$watch_log"  # the previous run's "reconcile  full" line must not pass for this run's
printf '\n%s$ %s%s\n' "$bold" "$BIN/reconcile watch --interval 60 --debounce 0.2 $MANIFESTS >$watch_log &" "$plain"
"$BIN/reconcile" watch --interval 60 --debounce 0.2 "$MANIFESTS" >"$watch_log" 2>&1 &
watch_pid=$!
# Sign-ups made before watch read its feed positions would still converge (at its next full reconcile, a
# minute away): wait for the first full reconcile so the demo shows the feeds at work.
if ! "$BIN/python" scripts/demo_signups.py wait-for-log "$watch_log" "reconcile  full"; then
    cat "$watch_log" >&2
    exit 1
fi

# Two users sign up at run time through the app's back end (which may write _users; no role given).
printf '\n%sTwo sign-ups arrive through the app back end: zoë and Mark.O+demo@example.com%s\n' "$bold" "$plain"
"$BIN/python" scripts/demo_signups.py sign-up
printf '\n%sreconcile watch converges them with no apply: the role that opens main-entities and a first one-shot replication to analytics (couch_peruser made each database and its security)%s\n' "$bold" "$plain"
if ! "$BIN/python" scripts/demo_signups.py converged; then
    cat "$watch_log" >&2
    exit 1
fi
# The fan-in to analytics is `fanIn: triggered`: watch starts a one-shot replication of each user database
# that changed, so documents reach analytics while it runs.
printf '\n%szoë writes to her database and to main-entities; both documents reach analytics%s\n' "$bold" "$plain"
"$BIN/python" scripts/demo_signups.py flow

printf '\n%sThree weeks of use: the devices of all four users sync what they wrote offline%s\n' "$bold" "$plain"
"$BIN/python" scripts/demo_signups.py history

printf '\n%sWhat watch logged (%s):%s\n' "$bold" "$watch_log" "$plain"
cat "$watch_log"
printf '\n%s$ kill -TERM %s%s\n' "$bold" "$watch_pid" "$plain"
kill -TERM "$watch_pid"
set +e
wait "$watch_pid"
status=$?
set -e
watch_pid=''
tail -n 1 "$watch_log"
echo "reconcile watch exited $status"
[ "$status" = 0 ] || exit 1

printf '\n%sThe analytics panel (served by CouchDB from analytics-panel/_design/panel)%s\n' "$bold" "$plain"
"$BIN/python" scripts/demo_signups.py panel
# couchsim lives as long as this script: on a terminal, keep it (and the panel) up until the reader is done.
if [ -n "$couchsim_pid" ] && [ -t 0 ] && [ -t 1 ]; then
    read -r -p "couchsim serves the panel until you press Enter. " _ || true
fi
