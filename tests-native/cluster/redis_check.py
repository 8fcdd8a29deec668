#!/usr/bin/env python3
"""The client side's own checker: writes keys to redis and reads them back, remembering exactly which writes were
acknowledged. Run inside the client namespace (ip netns exec ... python3 redis_check.py ...).

    redis_check.py write HOST PREFIX COUNT [--pipeline N]   -> {"acked": n, "errors": [...], "seconds": s}
    redis_check.py verify HOST PREFIX COUNT                  -> {"checked": n, "missing": [...], "wrong": [...]}
    redis_check.py stream HOST PREFIX THREADS OUT STOP       writes until the file STOP exists; appends one line
                                                             "unix_us key" to OUT per acknowledged write
    redis_check.py verify-log HOST OUT                       -> {"checked": n, ...} every key OUT acknowledged

Values are derived from the key (value = "v:" + key), so verify needs no state from write. A write counts as
acknowledged only when redis answered +OK to it; verify checks the first COUNT keys.
"""
import json
import socket
import sys
import time


class Resp:
    def __init__(self, host, port=6379, timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, *commands):
        out = bytearray()
        for args in commands:
            out += b"*%d\r\n" % len(args)
            for a in args:
                a = a.encode() if isinstance(a, str) else a
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)

    def reply(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2].decode()
        raise ValueError(f"unexpected reply {line!r}")


def write(host, prefix, count, pipeline=16):
    r = Resp(host)
    acked, errors, start = 0, [], time.time()
    for first in range(0, count, pipeline):
        keys = [f"{prefix}:{i}" for i in range(first, min(count, first + pipeline))]
        r.send(*[("SET", k, "v:" + k) for k in keys])
        for k in keys:
            a = r.reply()
            if a == "OK":
                acked += 1
            else:
                errors.append(f"{k}: {a}")
    return {"acked": acked, "errors": errors[:20], "seconds": round(time.time() - start, 3)}


def verify_keys(host, keys):
    """Reads keys back in pipelined batches: each must hold "v:" + its name."""
    r = Resp(host)
    missing, wrong = [], []
    for first in range(0, len(keys), 64):
        batch = keys[first:first + 64]
        r.send(*[("GET", k) for k in batch])
        for k in batch:
            v = r.reply()
            if v is None:
                missing.append(k)
            elif v != "v:" + k:
                wrong.append(k)
    return {"checked": len(keys), "missing": missing[:50], "missingCount": len(missing), "wrong": wrong[:50],
            "wrongCount": len(wrong)}


def verify(host, prefix, count):
    return verify_keys(host, [f"{prefix}:{i}" for i in range(count)])


def stream(host, prefix, threads, out_path, stop_path):
    """Client load through failures: each thread writes its own keys one at a time; a write that fails (timeout,
    reset, refused) is retried on a new connection with the same key until it is acknowledged."""
    import os
    import threading
    out = open(out_path, "a", buffering=1)
    lock = threading.Lock()
    counts = [0] * threads

    def worker(t):
        r, i = None, 0
        while not os.path.exists(stop_path):
            key = f"{prefix}:{t}:{i}"
            try:
                if r is None:
                    r = Resp(host, timeout=1)
                r.send(("SET", key, "v:" + key))
                if r.reply() == "OK":
                    with lock:
                        out.write(f"{int(time.time() * 1e6)} {key}\n")
                    counts[t] += 1
                    i += 1
            except (OSError, ConnectionError, ValueError):
                if r is not None:
                    r.sock.close()
                r = None
                time.sleep(0.02)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.close()
    return {"acked": sum(counts)}


def verify_log(host, out_path):
    """Every key the stream logged as acknowledged."""
    return verify_keys(host, [line.split()[1] for line in open(out_path) if line.strip()])


def main(argv):
    if len(argv) >= 4 and argv[1] == "verify-log":
        print(json.dumps(verify_log(argv[2], argv[3])))
        return 0
    if len(argv) >= 7 and argv[1] == "stream":
        print(json.dumps(stream(argv[2], argv[3], int(argv[4]), argv[5], argv[6])))
        return 0
    if len(argv) < 5 or argv[1] not in ("write", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    host, prefix, count = argv[2], argv[3], int(argv[4])
    pipeline = int(argv[argv.index("--pipeline") + 1]) if "--pipeline" in argv else 16
    result = write(host, prefix, count, pipeline) if argv[1] == "write" else verify(host, prefix, count)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
