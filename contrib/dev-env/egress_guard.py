#!/usr/bin/env python3
"""egress_guard.py -- a loopback HTTP(S) "proxy" that refuses every request and logs it.

Owns: refusing and recording what containerd would have fetched from outside. Must not
forward anything, resolve names, or listen on a non-loopback address.

up.sh copies it to BASE/bin/ and starts containerd with HTTP_PROXY/HTTPS_PROXY pointing
here (NO_PROXY covers loopback). Any registry that is neither loopback nor redirected by
a hosts.toml under certs.d therefore ends up here instead of on the network: containerd
does no DNS lookup and opens no socket beyond 127.0.0.1 for it, the pull fails in about
a millisecond with a self-describing error ("vk-cri egress guard: HOST:443 is not a
local registry (offline)"), and the attempt is recorded as one JSON line in the log.

  python3 egress_guard.py --listen 127.0.0.1:5009 --log BASE/log/egress-guard.jsonl

GET /healthz (origin-form, not proxied) answers 200: up.sh's liveness probe.
Stdlib only.
"""
import argparse
import asyncio
import ipaddress
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:5009")
    ap.add_argument("--log", default="-")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit(f"egress_guard: refusing to listen on non-loopback {host}")
    out = sys.stdout if a.log == "-" else open(a.log, "a", buffering=1)

    async def handle(reader, writer):
        peer = writer.get_extra_info("peername")
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            ua = ""
            while True:  # drain request headers
                h = await asyncio.wait_for(reader.readline(), 10)
                if h in (b"\r\n", b"\n", b""):
                    break
                if h.lower().startswith(b"user-agent:"):
                    ua = h.split(b":", 1)[1].strip().decode("latin-1")
            parts = line.decode("latin-1").split()
            if len(parts) < 2:
                return  # empty/garbled connection (e.g. a port probe): nothing to log
            method, target = parts[0], parts[1]
            if method != "CONNECT" and target.startswith("/"):
                # origin-form request: addressed to us, not proxied (up.sh's /healthz)
                body = b"vk-cri egress guard: refuses every proxied request\n"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
                await writer.drain()
                return
            out.write(json.dumps({"ts": round(time.time(), 3), "peer": f"{peer[0]}:{peer[1]}",
                                  "method": method, "target": target, "user_agent": ua}) + "\n")
            # Go's transport turns the reason phrase of a refused CONNECT into the error text.
            reason = f"vk-cri egress guard: {target} is not a local registry (offline)"
            body = (reason + "\n").encode()
            writer.write(f"HTTP/1.1 403 {reason}\r\nContent-Type: text/plain\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except Exception:  # noqa: BLE001 - a refusing proxy has nothing to report upward
            pass
        finally:
            writer.close()

    async def serve():
        srv = await asyncio.start_server(handle, host, int(port))
        async with srv:
            await srv.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
