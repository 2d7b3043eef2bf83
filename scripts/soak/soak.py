#!/usr/bin/env python3
"""Soak ginx: mixed load for a long time while its config and its backends change.

Not part of CI (it runs for 30 minutes by default). What it does, all on
127.0.0.1:

- backends: two nginx instances (A and B) answering `/` (a small body),
  `/big` (1 MiB) and `POST /post`, and one WebSocket echo server (in this
  process);
- ginx in front: one listener, `/` and `/big` and `/post` round robin over A
  and B, `/ws` to the echo server, and a `conf.d/soak.toml` that is rewritten
  (atomic rename) every 10 s, alternating the weights of A and B and the body
  of a `respond` route;
- load, each in bounded chunks until the end (wrk and h2load are given a
  duration, every client loop checks the clock):
  keep-alive GETs (wrk), a new connection per GET (wrk, `Connection: close`),
  64 KiB uploads (wrk, POST), HTTP/2 with prior knowledge (h2load),
  WebSocket echo clients, and slow clients (a request head sent a byte at a
  time, a 1 MiB response read slowly);
- chaos: backend B is killed (SIGKILL) and restarted every 30 s;
- every 5 s: ginx's RSS, open file descriptors, threads and open client
  connections (from /metrics).

At the end it writes a Markdown report: the samples, whether RSS, fds and
threads stayed flat (the mean of the last fifth against the mean of the
second fifth, after warm-up: within 5 %), failed idempotent requests (must be
0: GETs are retried on the other server), failed uploads (POSTs to the
killed backend are not retried, by design), and any panic in ginx's log.

    cargo build --release
    python3 scripts/soak/soak.py --ginx target/release/ginx --duration 1800 --out /tmp/soak.md

Needs nginx, wrk and h2load (Debian: nginx-light or nginx, wrk, nghttp2-client).
"""

import argparse
import asyncio
import base64
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PROXY = 18180
ADMIN = 18190
BACKEND_A = 19101
BACKEND_B = 19102
WS_BACKEND = 19103

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_max_body_size 10m;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /big {{ alias {dir}/big; }}
        location = /post {{ return 200 "posted\\n"; }}
        location / {{ return 200 "{name}\\n"; }}
    }}
}}
"""

GINX_MAIN = """\
include = ["conf.d/*.toml"]

[global]
log_level = "info"
shutdown_timeout = "5s"

[admin]
bind = "127.0.0.1:{admin}"

[upstream.ws]
servers = ["127.0.0.1:{ws}"]
"""

GINX_ROTATING = """\
# rewritten every 10 s by scripts/soak/soak.py (generation {n})
[listener.web]
bind = "127.0.0.1:{proxy}"
upstream = "app"
{listener_extra}

[[listener.web.route]]
path = "/ws"
upstream = "ws"

[[listener.web.route]]
path = "/gen"
respond = {{ status = 200, body = "generation {n}\\n" }}

[upstream.app]
servers = [{{ addr = "127.0.0.1:{a}", weight = {wa} }}, {{ addr = "127.0.0.1:{b}", weight = {wb} }}]
connect_timeout = "1s"
fail_timeout = "2s"
"""

ALL_LOADS = "keepalive,close,post,h2,ws,slow,reload,kill"

UPLOAD_LUA = """\
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
"""


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Backend:
    """One nginx backend that can be killed and started again."""

    def __init__(self, work, name, port):
        self.dir = os.path.join(work, f"backend-{name}")
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "big"), "wb") as f:
            f.write(b"b" * (1 << 20))
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, port=port, name=name))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["nginx", "-c", self.conf, "-p", self.dir, "-e", os.path.join(self.dir, "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


LISTENER_EXTRA = ""


def write_rotating(confd, n):
    weights = (1, 2) if n % 2 else (2, 1)
    text = GINX_ROTATING.format(n=n, proxy=PROXY, listener_extra=LISTENER_EXTRA, a=BACKEND_A, b=BACKEND_B, wa=weights[0], wb=weights[1])
    tmp = os.path.join(confd, ".soak.toml.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(confd, "soak.toml"))


# ---------------------------------------------------------------- WebSocket --


async def ws_read_frame(reader):
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4) if head[1] & 0x80 else None
    payload = await reader.readexactly(length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head[0] & 0x0F, payload


def ws_frame(opcode, payload, masked):
    head = bytes([0x80 | opcode])
    mask_bit = 0x80 if masked else 0
    assert len(payload) < 126
    head += bytes([mask_bit | len(payload)])
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def ws_echo_server():
    async def serve(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head).group(1)
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            while True:
                opcode, payload = await ws_read_frame(reader)
                if opcode == 8:
                    break
                writer.write(ws_frame(opcode, payload, masked=False))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, AttributeError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", WS_BACKEND)


async def ws_client(end, stats):
    """Connect, echo a message every 200 ms for up to 20 s, reconnect."""
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", PROXY)
            key = base64.b64encode(os.urandom(16))
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if b" 101 " not in head.split(b"\r\n")[0]:
                raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
            session_end = min(end, time.monotonic() + 20)
            while time.monotonic() < session_end:
                message = os.urandom(8).hex().encode()
                writer.write(ws_frame(1, message, masked=True))
                _, echoed = await asyncio.wait_for(ws_read_frame(reader), 10)
                if echoed != message:
                    raise ConnectionError("echo mismatch")
                stats["ws_messages"] += 1
                await asyncio.sleep(0.2)
            writer.write(ws_frame(8, b"", masked=True))
            writer.close()
            stats["ws_sessions"] += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as error:
            stats["ws_failed"] += 1
            stats["ws_errors"].append(str(error)[:120])
            await asyncio.sleep(0.5)


async def slow_client(end, stats):
    """Send a request head a byte every 50 ms, then read 1 MiB at 128 KiB/s."""
    request = b"GET /big HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", PROXY)
            for i in range(len(request)):
                writer.write(request[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.05)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if b" 200 " not in head.split(b"\r\n")[0]:
                raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            got = 0
            while got < length:
                chunk = await asyncio.wait_for(reader.read(16384), 10)
                if not chunk:
                    raise ConnectionError(f"truncated at {got} of {length}")
                got += len(chunk)
                await asyncio.sleep(0.125)
            writer.close()
            stats["slow_ok"] += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, AttributeError) as error:
            stats["slow_failed"] += 1
            stats["slow_errors"].append(str(error)[:120])
            await asyncio.sleep(0.5)


# --------------------------------------------------------------- load tools --

WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def wrk_loop(name, args, end, chunk, results):
    """Run wrk in `chunk`-second runs until `end`; sum requests and failures."""
    async def run():
        while time.monotonic() < end - 1:
            seconds = max(1, min(chunk, int(end - time.monotonic())))
            proc = await asyncio.create_subprocess_exec(
                "wrk", *args[:-1], "-d", f"{seconds}s", args[-1],
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
            out = (await proc.communicate())[0].decode(errors="replace")
            r = results.setdefault(name, {"requests": 0, "non_2xx": 0, "socket_errors": 0, "runs": 0})
            r["runs"] += 1
            m = re.search(r"(\d+) requests in", out)
            r["requests"] += int(m.group(1)) if m else 0
            m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            r["non_2xx"] += int(m.group(1)) if m else 0
            m = WRK_ERRORS.search(out)
            # wrk counts a server's close of a `Connection: close` response
            # as nothing; a read error is a reset, a timeout is 2 s without
            # a response.
            r["socket_errors"] += sum(int(g) for g in m.groups()) if m else 0

    return run()


async def h2load_loop(end, chunk, results):
    while time.monotonic() < end - 1:
        seconds = max(1, min(chunk, int(end - time.monotonic())))
        proc = await asyncio.create_subprocess_exec(
            "h2load", "-c", "4", "-m", "8", "-D", str(seconds), f"http://127.0.0.1:{PROXY}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out = (await proc.communicate())[0].decode(errors="replace")
        r = results.setdefault("h2", {"requests": 0, "non_2xx": 0, "socket_errors": 0, "runs": 0})
        r["runs"] += 1
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        if m:
            r["requests"] += int(m.group(1))
            r["socket_errors"] += int(m.group(3)) + int(m.group(4))
        m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        if m:
            r["non_2xx"] += int(m.group(3)) + int(m.group(4))


# ------------------------------------------------------------------ samples --


def sample(pid):
    status = open(f"/proc/{pid}/status").read()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    try:
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=5).read().decode()
        conns = sum(float(v) for v in re.findall(r'^ginx_client_connections_open\{listener="web"\} (\S+)', metrics, re.M))
    except OSError:
        conns = -1
    return {"t": time.monotonic(), "rss_kib": rss, "fds": fds, "threads": threads, "client_conns": conns}


async def sampler(pid, end, samples):
    while time.monotonic() < end:
        samples.append(sample(pid))
        await asyncio.sleep(5)


async def chaos(confd, backend_b, end, counts, loads):
    start = time.monotonic()
    n = 1
    next_config, next_kill = start + 10, start + 30
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_config and "reload" in loads:
            n += 1
            write_rotating(confd, n)
            counts["config_writes"] += 1
            next_config += 10
        if now >= next_kill and "kill" in loads:
            backend_b.kill()
            counts["backend_kills"] += 1
            await asyncio.sleep(2)
            backend_b.start()
            next_kill += 30
        await asyncio.sleep(0.2)
    return n


def flat(samples, key, warmup):
    """Mean of the last fifth against the mean of the second fifth."""
    values = [s[key] for s in samples if s["t"] >= warmup]
    if len(values) < 10:
        return None
    fifth = len(values) // 5
    early = statistics.mean(values[fifth : 2 * fifth])
    late = statistics.mean(values[-fifth:])
    return early, late, (late - early) / early * 100 if early else 0.0


async def soak(args, work):
    confd = os.path.join(work, "ginx", "conf.d")
    os.makedirs(confd)
    with open(os.path.join(work, "ginx", "ginx.toml"), "w") as f:
        f.write(GINX_MAIN.format(admin=ADMIN, ws=WS_BACKEND))
    write_rotating(confd, 1)
    with open(os.path.join(work, "upload.lua"), "w") as f:
        f.write(UPLOAD_LUA)

    a, b = Backend(work, "a", BACKEND_A), Backend(work, "b", BACKEND_B)
    a.start()
    b.start()
    ws_server = await ws_echo_server()
    ginx_log = open(os.path.join(work, "ginx.log"), "wb")
    ginx = subprocess.Popen(
        [os.path.abspath(args.ginx), "-c", os.path.join(work, "ginx", "ginx.toml")],
        stdout=ginx_log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PROXY}/gen", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or ginx.poll() is not None:
                    raise SystemExit("ginx did not start; see its log in " + work)
                await asyncio.sleep(0.1)
        log(f"ginx pid {ginx.pid} serving; soaking for {args.duration} s")
        start = time.monotonic()
        end = start + args.duration
        results = {}
        counts = {"config_writes": 0, "backend_kills": 0}
        client = {"ws_messages": 0, "ws_sessions": 0, "ws_failed": 0, "ws_errors": [],
                  "slow_ok": 0, "slow_failed": 0, "slow_errors": []}
        samples = []
        url = f"http://127.0.0.1:{PROXY}"
        loads = set(args.loads.split(","))
        tasks = [sampler(ginx.pid, end, samples), chaos(confd, b, end, counts, loads)]
        if "keepalive" in loads:
            tasks.append(wrk_loop("keepalive GET", ["-t1", "-c16", "--timeout", "5s", f"{url}/"], end, 60, results))
        if "close" in loads:
            tasks.append(wrk_loop("new connection per GET",
                                  ["-t1", "-c4", "--timeout", "5s", "-H", "Connection: close", f"{url}/"], end, 60, results))
        if "post" in loads:
            tasks.append(wrk_loop("64 KiB POST", ["-t1", "-c4", "--timeout", "5s", "-s", os.path.join(work, "upload.lua"),
                                                 f"{url}/post"], end, 60, results))
        if "h2" in loads:
            tasks.append(h2load_loop(end, 60, results))
        if "ws" in loads:
            tasks += [ws_client(end, client) for _ in range(args.websockets)]
        if "slow" in loads:
            tasks += [slow_client(end, client) for _ in range(args.slow)]
        await asyncio.gather(*tasks)
        await asyncio.sleep(2)
        final = sample(ginx.pid)
        alive = ginx.poll() is None
    finally:
        ginx.send_signal(signal.SIGTERM)
        try:
            ginx.wait(15)
        except subprocess.TimeoutExpired:
            ginx.kill()
        ws_server.close()
        a.kill()
        b.kill()
        ginx_log.close()
    text = open(os.path.join(work, "ginx.log"), errors="replace").read()
    panics = [line for line in text.splitlines() if "panicked" in line]
    return report(args, results, counts, client, samples, final, alive, panics, start, ginx.returncode)


def report(args, results, counts, client, samples, final, alive, panics, start, exit_code):
    out = []
    out.append(f"# Soak: {args.duration} s, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    out.append(f"`python3 scripts/soak/soak.py --ginx {args.ginx} --duration {args.duration}`\n")
    out.append(f"Config rewritten {counts['config_writes']} times, backend B killed and restarted "
               f"{counts['backend_kills']} times; ginx alive at the end: {alive}; exit code after SIGTERM: {exit_code}.\n")
    out.append("| load | requests | non-2xx | socket errors |\n|---|---:|---:|---:|")
    for name, r in results.items():
        out.append(f"| {name} | {r['requests']} | {r['non_2xx']} | {r['socket_errors']} |")
    out.append(f"| WebSocket echo | {client['ws_messages']} messages, {client['ws_sessions']} sessions | | {client['ws_failed']} failed sessions |")
    out.append(f"| slow clients (1 MiB each) | {client['slow_ok']} | | {client['slow_failed']} failed |\n")
    idempotent = sum(results.get(k, {}).get("non_2xx", 0) + results.get(k, {}).get("socket_errors", 0)
                     for k in ("keepalive GET", "new connection per GET", "h2"))
    idempotent += client["ws_failed"] + client["slow_failed"]
    out.append(f"**Failed idempotent requests: {idempotent}** (GETs, HTTP/2 GETs, WebSocket sessions, slow GETs). "
               "POSTs that failed are the uploads in flight to, or sent to, the killed backend: ginx does not "
               "resend a non-idempotent request that may have reached a server.\n")
    for kind in ("ws_errors", "slow_errors"):
        if client[kind]:
            out.append(f"{kind}: " + "; ".join(sorted(set(client[kind]))[:5]) + "\n")
    warmup = start + min(60, args.duration / 10)
    out.append("| resource | early (2nd fifth) | late (last fifth) | change | flat within 5 % |\n|---|---:|---:|---:|---|")
    for key in ("rss_kib", "fds", "threads"):
        f = flat(samples, key, warmup)
        if f:
            out.append(f"| {key} | {f[0]:.0f} | {f[1]:.0f} | {f[2]:+.1f} % | {'yes' if abs(f[2]) <= 5 else 'NO'} |")
    out.append(f"\nAfter the load stopped (2 s later): RSS {final['rss_kib']} KiB, {final['fds']} fds, "
               f"{final['threads']} threads, {final['client_conns']:.0f} client connections open.\n")
    out.append(f"Panics in ginx's log: {len(panics)}" + ("".join("\n    " + p for p in panics[:5])))
    out.append("\nSamples every 5 s (minute marks):\n\n| t (s) | RSS KiB | fds | threads | client conns |\n|---:|---:|---:|---:|---:|")
    for s in samples[::12]:
        out.append(f"| {s['t'] - start:.0f} | {s['rss_kib']} | {s['fds']} | {s['threads']} | {s['client_conns']:.0f} |")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ginx", default="target/release/ginx")
    parser.add_argument("--duration", type=int, default=1800)
    parser.add_argument("--websockets", type=int, default=10)
    parser.add_argument("--slow", type=int, default=10)
    parser.add_argument("--loads", default=ALL_LOADS, help=f"comma list of: {ALL_LOADS}")
    parser.add_argument("--max-requests-per-connection", type=int,
                        help="set the listener's max_requests_per_connection (ginx's default: 1000)")
    parser.add_argument("--out", help="write the report here too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    global LISTENER_EXTRA
    if args.max_requests_per_connection is not None:
        LISTENER_EXTRA = f"max_requests_per_connection = {args.max_requests_per_connection}"
    for tool in ("nginx", "wrk", "h2load"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (Debian: apt-get install nginx wrk nghttp2-client)")
    work = tempfile.mkdtemp(prefix="ginx-soak-")
    # nginx's workers drop to an unprivileged user and must read /big.
    os.chmod(work, 0o755)
    try:
        text = asyncio.run(soak(args, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"work directory kept: {work}")
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
