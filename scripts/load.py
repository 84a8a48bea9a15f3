#!/usr/bin/env python3
"""Load check: many control sessions and concurrent transfers against `ringmover serve`.

Starts a server on a scratch root, then holds SESSIONS logged-in control sessions (spread over
loopback source addresses, within the per-address limit) while TRANSFERS of them download a
file at the same time. Prints the server's resident memory and open descriptors before, during
and after, and exits 1 if they do not come back near the baseline once the sessions close.

    cargo build --release
    python3 scripts/load.py --binary target/release/ringmover [--sessions 500 --transfers 64]
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


class Control:
    def __init__(self, addr, source):
        self.source = source
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.settimeout(120)
        self.sock.connect(addr)
        self.file = self.sock.makefile("rb")
        self.reply()

    def reply(self):
        line = self.file.readline().decode()
        code = line[:3]
        if len(line) > 3 and line[3] == "-":
            while not self.file.readline().decode().startswith(code + " "):
                pass
        return int(code), line.strip()

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def download(self, path):
        code, text = self.cmd("PASV")
        assert code == 227, text
        nums = [int(x) for x in text[text.index("(") + 1 : text.index(")")].split(",")]
        # From the control connection's address: the server drops data connections from others.
        data = socket.create_connection((".".join(map(str, nums[:4])), nums[4] * 256 + nums[5]),
                                        source_address=(self.source, 0))
        code, text = self.cmd(f"RETR {path}")
        assert code in (125, 150), text
        got = 0
        while True:
            chunk = data.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        data.close()
        code, text = self.reply()
        assert code == 226, text
        return got

    def close(self):
        try:
            self.cmd("QUIT")
        except OSError:
            pass
        self.sock.close()


def sample(pid, label, rows):
    rows.append((label, rss_kb(pid), fds(pid), threads(pid)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/ringmover")
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--transfers", type=int, default=64)
    ap.add_argument("--size-mib", type=int, default=64)
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="rm-load", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    with open(os.path.join(root, "f"), "wb") as f:
        f.write(os.urandom(1 << 20) * args.size_mib)
    server = subprocess.Popen(
        [args.binary, "serve", "--root", root, "--listen", "127.0.0.1:0",
         "--max-sessions", str(args.sessions + 50)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    host, port = line.strip().removeprefix("listening on ").rsplit(":", 1)
    addr = (host, int(port))
    pid = server.pid
    time.sleep(0.5)
    rows = []
    sample(pid, "before", rows)

    # 25 sessions per source address keeps within the default per-address limit (32).
    sessions = []
    for i in range(args.sessions):
        c = Control(addr, f"127.0.{10 + i // 25}.{1 + i % 25}")
        assert c.cmd("USER anonymous")[0] == 331
        assert c.cmd("PASS load@")[0] == 230
        sessions.append(c)
    sample(pid, f"{args.sessions} sessions", rows)

    errors = []
    moved = []
    peak = {"rss": 0, "fds": 0}

    def run(c):
        try:
            moved.append(c.download("f"))
        except Exception as e:  # reported below
            errors.append(repr(e))

    workers = [threading.Thread(target=run, args=(c,)) for c in sessions[: args.transfers]]
    t0 = time.time()
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        peak["rss"] = max(peak["rss"], rss_kb(pid))
        peak["fds"] = max(peak["fds"], fds(pid))
        time.sleep(0.05)
    secs = time.time() - t0
    rows.append((f"peak during {args.transfers} transfers", peak["rss"], peak["fds"], threads(pid)))
    sample(pid, "transfers done", rows)

    for c in sessions:
        c.close()
    time.sleep(2)
    sample(pid, "after (sessions closed)", rows)
    server.terminate()
    server.wait()
    subprocess.run(["rm", "-rf", root])

    print(f"{'state':<32} {'RSS kB':>10} {'fds':>6} {'threads':>8}")
    for label, rss, nfd, nth in rows:
        print(f"{label:<32} {rss:>10} {nfd:>6} {nth:>8}")
    total = sum(moved)
    print(f"{len(moved)} of {args.transfers} transfers complete, {total / 1e9:.2f} GB in {secs:.2f} s "
          f"({total / secs / 1e9:.2f} GB/s aggregate); errors: {len(errors)}")
    for e in errors[:5]:
        print("  ", e)
    base, after = rows[0], rows[-1]
    ok = not errors and after[2] <= base[2] + 4 and after[1] <= base[1] + 64 * 1024
    print("back to baseline" if ok else "NOT back to baseline")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
