#!/bin/bash
# Binary upgrades under load, ginx against nginx: wrk -t1 -c64 for 12 s and a
# binary upgrade every 2 s (5 in all); prints wrk's totals and errors (wrk
# never retries, so every closed-under-a-request connection is an error).
#   nginx: USR2 to the master, wait for the new master's pid file, QUIT the old
#   haproxy: USR2 to the -W master (it re-executes itself: its binary upgrade)
#   ginx:  `ginx upgrade -c ginx.toml` (USR2 through pid_file, waits for ready)
# Needs an HTTP backend on 127.0.0.1:19201 (any 200; docs/performance.md used
# an nginx returning an empty body), wrk, nginx (run as root: nginx's upgrade
# needs daemon mode and an absolute binary path).
# usage: GINX=target/release/ginx scripts/upgrade-bench/run.sh nginx|haproxy|ginx
set -u
sys=$1
GINX=$(realpath "${GINX:-target/release/ginx}")
DIR=/tmp/ginx-upgrade-bench
mkdir -p "$DIR" && cp "$(dirname "$0")"/{nginx.conf,haproxy.cfg,ginx.toml} "$DIR"/ && rm -f "$DIR"/nginx.pid*
cd "$DIR"
if [[ $sys == nginx ]]; then
  $(command -v nginx) -c ${DIR}/nginx.conf; sleep 1; port=18500
  up() { old=$(cat nginx.pid); kill -USR2 $old; for i in $(seq 50); do [[ -f nginx.pid.oldbin && -s nginx.pid && $(cat nginx.pid) != $old ]] && break; sleep 0.05; done; sleep 0.3; kill -QUIT $old; }
elif [[ $sys == haproxy ]]; then
  haproxy -W -D -f ${DIR}/haproxy.cfg; sleep 1; port=18502
  up() { kill -USR2 $(head -1 haproxy.pid); sleep 0.3; }
else
  GINX_WORKERS=1 ${GINX} -c ${DIR}/ginx.toml 2>ginx.log & sleep 1; port=18501
  up() { ${GINX} upgrade -c ${DIR}/ginx.toml >> up.log 2>&1; }
fi
wrk -t1 -c64 -d12s http://127.0.0.1:$port/ > wrk-$sys.txt 2>&1 & W=$!
for i in 1 2 3 4 5; do sleep 2; up; done
wait $W
grep -E 'requests in|Socket errors|Non-2xx' wrk-$sys.txt
case $sys in
  nginx) kill -QUIT "$(cat nginx.pid)" ;;
  haproxy) kill -USR1 "$(head -1 haproxy.pid)" ;;
  ginx) kill "$(cat ginx.pid)" ;;
esac
sleep 1
