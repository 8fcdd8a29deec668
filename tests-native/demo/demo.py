#!/usr/bin/env python3
"""Foundation demo: boot a guest in the patched QEMU with libplover.so attached and show what the library sees.

Run through `./build.sh demo` (which builds everything and exports PLOVER_QEMU, PLOVER_LIB, PLOVER_KERNEL,
PLOVER_INITRD). Prints the RAM blocks the library was handed, dirty-page counts over a few seconds of guest
activity, and the frames filter-plover held and released while a peer talked ARP to the guest.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

GUEST_MAC = bytes.fromhex("525400123456")
PEER_MAC = bytes.fromhex("525400aabbcc")
GUEST_IP, PEER_IP = "10.0.2.2", "10.0.2.1"


class Admin:
    """The library's admin socket: one command line in, one JSON line out."""

    def __init__(self, path, timeout=30):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.file = self.sock.makefile("rwb")

    def __call__(self, command):
        self.file.write(command.encode() + b"\n")
        self.file.flush()
        reply = json.loads(self.file.readline())
        if not reply.get("ok"):
            raise RuntimeError(f"{command}: {reply}")
        return reply


def arp_request():
    return (b"\xff" * 6 + PEER_MAC + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + PEER_MAC
            + socket.inet_aton(PEER_IP) + b"\x00" * 6 + socket.inet_aton(GUEST_IP))


def main():
    env = os.environ
    work = tempfile.mkdtemp(prefix="plover-demo.")
    admin_path, qmp_path, serial = f"{work}/admin.sock", f"{work}/qmp.sock", f"{work}/serial.log"
    with open(f"{work}/cluster.key", "wb") as f:
        f.write(os.urandom(32))
    config = {
        "cluster": "demo", "keyFile": "cluster.key",
        "nodes": [{"id": 1, "role": "primary", "address": "127.0.0.1:17501", "admin": admin_path},
                  {"id": 2, "role": "backup", "address": "127.0.0.1:17502"},
                  {"id": 3, "role": "witness", "address": "127.0.0.1:17503"}],
    }
    with open(f"{work}/cluster.json", "w") as f:
        json.dump(config, f)

    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(0.05)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    qemu_port = probe.getsockname()[1]
    probe.close()

    cmd = [env["PLOVER_QEMU"], "-M", "pc", "-m", "512M", "-smp", "2", "-accel", "tcg,thread=multi",
           "-display", "none", "-nodefaults", "-S",
           "-L", "/usr/share/seabios", "-L", "/usr/lib/ipxe/qemu", "-L", "/usr/share/qemu",
           "-kernel", env["PLOVER_KERNEL"], "-initrd", env["PLOVER_INITRD"],
           "-append", f"console=ttyS0 quiet plover.ip={GUEST_IP}/24 plover.work=dirty",
           "-serial", f"file:{serial}", "-qmp", f"unix:{qmp_path},server=on,wait=off",
           "-netdev", f"dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port={qemu_port},"
                      f"remote.type=inet,remote.host=127.0.0.1,remote.port={peer.getsockname()[1]}",
           "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=",
           "-object", f"plover,id=ft0,lib={env['PLOVER_LIB']},role=primary,config={work}/cluster.json,node=1",
           "-object", "filter-plover,id=pf0,netdev=n0,ft=ft0"]
    print("QEMU command line:\n  " + " ".join(cmd) + "\n")
    qemu = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(f"{work}/qemu.stderr", "w"))
    try:
        admin = Admin(admin_path)
        qmp = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        qmp.connect(qmp_path)
        qf = qmp.makefile("rwb")
        qf.readline()
        for c in ("qmp_capabilities", "cont"):
            qf.write(json.dumps({"execute": c}).encode() + b"\n")
            qf.flush()
            qf.readline()

        status = admin("status")
        print(f"library attached: role {status.get('role')}, accelerator {status.get('accel')}, "
              f"ABI {status.get('abiVersion', status.get('abi'))}")
        print("\nRAM blocks handed to the library (zero copy):")
        print(f"  {'id':>2}  {'name':<24} {'ram_addr':>12} {'length':>12}")
        for b in admin("ramblocks")["blocks"]:
            print(f"  {b['id']:>2}  {b['name']:<24} {b['ramAddr']:>#12x} {b['length'] // 1024:>9} KiB")

        deadline = time.time() + 120
        while "PLOVER-GUEST-READY" not in open(serial, errors="replace").read():
            if time.time() > deadline or qemu.poll() is not None:
                raise RuntimeError("guest did not boot; see " + serial)
            time.sleep(0.2)
        print("\nguest booted; it rewrites 16 MiB of tmpfs every second")

        print("\ndirty pages per second (dirty-sync stops the VM, harvests the bitmaps, clears them, resumes):")
        admin("dirty-sync")
        for second in range(1, 6):
            time.sleep(1)
            r = admin("dirty-sync")
            parts = ", ".join(f"{b['name']}: {b['dirtyPages']}" for b in r["blocks"] if b["dirtyPages"])
            print(f"  t={second}s  {parts or 'no dirty pages'}")

        print("\noutput guard: the peer sends ARP requests; the guest's replies are held per epoch")
        admin("out-mode 0 hold")
        received = 0
        for epoch_round in range(1, 6):
            for _ in range(3):
                peer.sendto(arp_request(), ("127.0.0.1", qemu_port))
                time.sleep(0.1)
            time.sleep(0.5)
            before = received
            received += drain(peer)
            stats = admin("net-stats")["nics"][0]
            epoch = admin("out-cut 0")["epoch"]
            released = admin(f"out-release 0 {epoch}")["released"]
            time.sleep(0.3)
            after = drain(peer)
            received += after
            print(f"  epoch {epoch}: held {stats['heldPkts']} frames before release "
                  f"(peer saw {received - after - before}), released {released}, peer then saw {after}")
        print(f"\nframes that reached the peer: {received} (all after their epoch was released)")
    finally:
        qemu.kill()
        qemu.wait()
    return 0


def drain(sock):
    n = 0
    while True:
        try:
            frame = sock.recv(65536)
        except socket.timeout:
            return n
        if frame[12:14] == b"\x08\x06" and frame[:6] == PEER_MAC:
            n += 1


if __name__ == "__main__":
    sys.exit(main())
