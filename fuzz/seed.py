#!/usr/bin/env python3
"""Seeds the fuzz corpora from control-channel transcripts.

Reads transcripts in either form used here: the replay files of tests/transcripts ("C: line" /
"S: reply") or wire captures ("+0.0078s  C->A       USER anonymous" / "A->C  227 ..."), and
writes corpus/<target>/ files:

- command_parse: one client command line each;
- session, framer: each dialogue's client lines, CRLF-terminated, as one input;
- client_reply: each server reply (continuation lines included);
- link_frame: the pool link's handshake frames;
- block_decode: MODE E streams built from the sizes and offsets in the dialogues' REST ranges
  and 111 markers, plus a few shapes (EOF first, EOD only, zero-length).

    python3 fuzz/seed.py tests/transcripts/*.txt [more transcripts...]
"""

import hashlib
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WIRE = re.compile(r"^\s*\+[\d.]+s\s+(\w)->(\w)\s+(.*)$")
CONT = re.compile(r"^\s{10,}(\S.*)$")


def dialogues(path):
    """(client lines, server replies) of one transcript."""
    client, server = [], []
    last = None
    for raw in open(path, errors="replace"):
        line = raw.rstrip("\n")
        if line.startswith("C: "):
            client.append(line[3:])
        elif line.startswith("S: "):
            server.append(line[3:])
        elif m := WIRE.match(line):
            src, _, text = m.groups()
            if src == "C":
                client.append(text)
                last = None
            else:
                server.append(text)
                last = len(server) - 1
        elif last is not None and (m := CONT.match(line)):
            server[last] += "\r\n " + m.group(1)
    return client, server


def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def block(desc, offset, payload):
    return struct.pack(">BQQ", desc, len(payload), offset) + payload


def eof(count):
    return struct.pack(">BQQ", 0x40, 0, count)


def main(paths):
    ranges = set()
    for p in paths:
        client, server = dialogues(p)
        for c in client:
            write("command_parse", c.encode())
        if client:
            data = "".join(c + "\r\n" for c in client).encode()
            write("session", data)
            write("framer", data)
        for s in server:
            write("client_reply", (s + "\r\n").encode())
            for a, b in re.findall(r"(\d+)-(\d+)", s):
                ranges.add((int(a), int(b)))
        for c in client:
            if c.upper().startswith("REST "):
                for a, b in re.findall(r"(\d+)-(\d+)", c):
                    ranges.add((int(a), int(b)))
    shapes = [
        eof(1) + block(0x08, 0, b"abcd"),
        block(0, 0, b"x" * 100) + eof(2) + block(0x08, 100, b""),
        block(0x08, 0, b""),
        block(0x48, 0, b""),
    ]
    for a, b in sorted(ranges)[:32]:
        n = min(b - a, 64)
        shapes.append(block(0, a, b"r" * n) + eof(1) + block(0x08, a + n, b""))
    for s in shapes:
        write("block_decode", s)
    nonce = "ab" * 32
    hello = ('{"Hello":{"version":2,"name":"pool-a","data_address":"127.0.0.2",'
             '"port_range":[50000,50100],"nonce":"%s"}}' % nonce).encode()
    proof = ('{"Proof":{"proof":"%s"}}' % ("cd" * 32)).encode()
    challenge = ('{"Challenge":{"nonce":"%s","proof":"%s"}}' % (nonce, "ef" * 32)).encode()
    frames = [struct.pack(">I", len(b)) + b for b in (hello, proof, challenge)]
    write("link_frame", frames[0])
    write("link_frame", frames[0] + frames[1])
    write("link_frame", frames[2] + struct.pack(">I", 1 << 26))
    for t in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        print(t, len(os.listdir(os.path.join(HERE, "corpus", t))))


if __name__ == "__main__":
    main(sys.argv[1:])
