"""Strangers at the door: until STOP_FILE exists, holds SILENT idle connections open to each HOST:PORT and keeps
opening connections that send random bytes and close (issue 14 item 2). Prints the attempts at the end."""
import os
import random
import socket
import sys
import threading
import time


def silent(endpoints, count, stop_file, held):
    while not os.path.exists(stop_file):
        for host, port in endpoints:
            while len(held[(host, port)]) < count and not os.path.exists(stop_file):
                try:
                    held[(host, port)].append(socket.create_connection((host, port), timeout=1))
                except OSError:
                    break
        time.sleep(0.2)
        for key, conns in held.items():   # the node closed some (its first-message deadline): open new ones
            alive = []
            for c in conns:
                try:
                    c.setblocking(False)
                    if c.recv(1) == b"":
                        c.close()
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    c.close()
                    continue
                alive.append(c)
            held[key] = alive


def garbage(endpoints, stop_file, counts):
    rnd = random.Random(7)
    while not os.path.exists(stop_file):
        host, port = rnd.choice(endpoints)
        try:
            with socket.create_connection((host, port), timeout=1) as c:
                c.sendall(rnd.randbytes(rnd.choice([1, 16, 300, 4096])))
                counts[0] += 1
        except OSError:
            counts[1] += 1


def main():
    stop_file, silent_per_endpoint = sys.argv[1], int(sys.argv[2])
    endpoints = [(e.rsplit(":", 1)[0], int(e.rsplit(":", 1)[1])) for e in sys.argv[3:]]
    held = {e: [] for e in endpoints}
    counts = [0, 0]
    threads = [threading.Thread(target=silent, args=(endpoints, silent_per_endpoint, stop_file, held), daemon=True)]
    threads += [threading.Thread(target=garbage, args=(endpoints, stop_file, counts), daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    while not os.path.exists(stop_file):
        time.sleep(0.1)
    print(f"garbage connections {counts[0]}, refused or failed {counts[1]}, "
          f"silent held at the end {sum(len(v) for v in held.values())}", flush=True)


if __name__ == "__main__":
    main()
