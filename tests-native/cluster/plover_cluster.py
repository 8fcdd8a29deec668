"""Three simulated hosts on one machine, for the end-to-end tests, the demo and the e2e benchmark.

Every host is a network namespace. A switch namespace holds the LAN bridge; each host and the client hang on it
through a veth pair. The VM hosts (node 1 primary, node 2 backup) bridge a tap device for their guest NIC onto
their link, exactly like a hypervisor host; node 3 runs the witness; the client namespace runs redis-benchmark and
the checks. Primary and backup start QEMU with identical command lines apart from role, node and log files, with
the same MAC and guest IP: only the primary's output ever reaches the LAN.

    10.77.0.1  node 1 (QEMU, primary)  --+
    10.77.0.2  node 2 (QEMU, backup)   --+-- bridge in the switch namespace
    10.77.0.3  node 3 (plover witness) --+
    10.77.0.10 client                  --+      guest (redis-server): 10.77.0.100, MAC 52:54:00:77:00:64

Everything is created with a prefix naming this process (plv<pid>-...), removed by stop() and at interpreter exit
or SIGINT/SIGTERM; namespaces left by a process that died without cleaning up are removed at the next start.
Needs root (ip netns) and the artifacts `./build.sh env` prints (PLOVER_QEMU, PLOVER_LIB, PLOVER_CLI,
PLOVER_KERNEL, PLOVER_INITRD).
"""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

GUEST_IP = "10.77.0.100"
GUEST_MAC = "52:54:00:77:00:64"
CLIENT_IP = "10.77.0.10"
SUBNET = 24
FIRMWARE = ["-L", "/usr/share/seabios", "-L", "/usr/lib/ipxe/qemu", "-L", "/usr/share/qemu"]
# Consensus timers for these machines: several QEMUs under TCG share 2 cores, and a thread that wants to run can
# wait tens of milliseconds for one (see ThreadScheduling.cs); the library's defaults (1 ms heartbeat, 10-30 ms
# election) are for dedicated hosts.
TCG_TIMEOUTS = {"heartbeatMs": 10, "electionMinMs": 200, "electionMaxMs": 400}
METRICS_PORT = 9400   # each node's Prometheus endpoint, on its own address, with Cluster(metrics=True)
_live = []  # clusters to tear down at exit


def sh(*cmd, check=True, capture=False, timeout=60):
    r = subprocess.run(cmd, check=False, text=True, timeout=timeout,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout if capture else r.returncode


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def work_dir(name):
    """A fresh folder for one test's nodes (configs, logs, images)."""
    return tempfile.mkdtemp(prefix=f"plover-e2e-{name}.")


def remove_work_dir(path, failed=False):
    """Removes a test's folder, but keeps it (and says where) when the test failed or PLOVER_KEEP_TEST_DIRS is set."""
    if failed or os.environ.get("PLOVER_KEEP_TEST_DIRS"):
        print(f"logs kept in {path}", file=sys.stderr)
    else:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_namespaces():
    """Namespaces of earlier harness processes that are gone (killed before they could clean up)."""
    out = sh("ip", "netns", "list", capture=True, check=False) or ""
    for line in out.splitlines():
        m = re.match(r"(plv(\d+)-\w+)", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            sh("ip", "netns", "del", m.group(1), check=False)


class AdminClient:
    """A node's admin socket (libplover in QEMU): one command line in, one JSON line out."""

    def __init__(self, path, timeout=60):
        self.path = path
        self.timeout = timeout
        self.sock = None
        self.lock = threading.Lock()   # one request and its reply at a time: tests poll from threads too

    def _connect(self):
        deadline = time.time() + self.timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(self.timeout)
                s.connect(self.path)
                self.sock, self.pending = s, b""
                return
            except OSError:
                s.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def call(self, command):
        with self.lock:
            return self._call(command)

    def _call(self, command):
        if self.sock is None:
            self._connect()
        self.sock.sendall(command.encode() + b"\n")
        while b"\n" not in self.pending:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                self.close()
                raise ConnectionError(f"{self.path}: connection closed during '{command}'")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return json.loads(line)

    def __call__(self, command):
        r = self.call(command)
        if not r.get("ok"):
            raise RuntimeError(f"{self.path}: {command}: {r.get('error')}")
        return r

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None


class Qmp:
    """QEMU's monitor (for inspection; the library owns the run state)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self.file.readline()
        self("qmp_capabilities")

    def __call__(self, command, **arguments):
        self.file.write(json.dumps({"execute": command, **({"arguments": arguments} if arguments else {})}).encode() + b"\n")
        self.file.flush()
        while True:
            r = json.loads(self.file.readline())
            if "return" in r or "error" in r:
                return r

    def close(self):
        self.file.close()   # its reference keeps the socket open otherwise, and QEMU's monitor serves one client
        self.sock.close()


class QmpEvents:
    """Records the QMP events of one QEMU on a monitor of its own (the second -qmp socket): connects as soon as the
    socket exists, negotiates, and appends every event (with the node's incarnation and the arrival time) to
    `events` until QEMU goes away. QEMU waits for this connection (wait=on) before it creates the machine, so the
    events of the start cannot be missed (with wait=off a slow connection once lost the first role change)."""

    def __init__(self, path, proc, incarnation, events):
        self.path, self.proc, self.incarnation, self.events = path, proc, incarnation, events
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"qmp-events-{os.path.basename(path)}")
        self.thread.start()

    def _run(self):
        while self.proc.poll() is None:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.path)
            except OSError:
                sock.close()
                time.sleep(0.05)
                continue
            try:
                f = sock.makefile("rwb")
                f.readline()
                f.write(b'{"execute": "qmp_capabilities"}\n')
                f.flush()
                for line in f:
                    message = json.loads(line)
                    if "event" in message:
                        self.events.append({**message, "incarnation": self.incarnation, "at": time.time()})
            except (OSError, ValueError):
                pass
            finally:
                sock.close()
            return


class Node:
    def __init__(self, cluster, node_id, role):
        self.cluster, self.id, self.role = cluster, node_id, role
        self.ns = f"{cluster.prefix}-n{node_id}"
        self.ip = f"10.77.0.{node_id}"
        self.proc = None
        self.admin_path = os.path.join(cluster.work, f"admin-{node_id}.sock")
        self.incarnation = 0
        self.stderr_path = os.path.join(cluster.work, f"node{node_id}.stderr")
        self.serial_path = os.path.join(cluster.work, f"serial-{node_id}.log")
        self.qmp_path = os.path.join(cluster.work, f"qmp-{node_id}.sock")
        self.qmp_events_path = os.path.join(cluster.work, f"qmp-events-{node_id}.sock")
        self.qmp_events = []   # every QMP event of every incarnation (QmpEvents), oldest first
        self._admin = None

    @property
    def admin(self):
        if self._admin is None:
            self._admin = AdminClient(self.admin_path)
        return self._admin

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def qmp(self, command, **arguments):
        """One QMP command on a monitor connection of its own (QEMU's monitor serves one client at a time)."""
        monitor = Qmp(self.qmp_path)
        try:
            return monitor(command, **arguments)
        finally:
            monitor.close()

    def events(self, name, incarnation=None, since=0.0):
        """The QMP events called name this node emitted (of one incarnation, if given), after time since."""
        return [e for e in list(self.qmp_events) if e["event"] == name and e["at"] >= since and
                (incarnation is None or e["incarnation"] == incarnation)]

    def wait_event(self, name, timeout=60, incarnation=None, since=0.0, where=lambda data: True):
        """The first such event whose data satisfies where, waiting up to timeout s; AssertionError if none came."""
        deadline = time.time() + timeout
        while True:
            found = [e for e in self.events(name, incarnation, since) if where(e.get("data", {}))]
            if found:
                return found[0]
            if time.time() > deadline:
                raise AssertionError(f"node {self.id}: no QMP event {name} within {timeout} s; events: "
                                     f"{[(e['event'], e.get('data')) for e in self.qmp_events if e['event'].startswith('PLOVER')]}")
            time.sleep(0.1)

    def stderr(self):
        return _read(self.stderr_path)

    def replica_role(self):
        """The replica's role by its admin socket, or None while it is down or does not answer."""
        try:
            return self.admin.call("replica").get("role") if self.alive() else None
        except (OSError, ConnectionError, ValueError):
            return None

    def wait_role(self, role, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.replica_role() == role:
                return
            time.sleep(0.05)
        raise AssertionError(f"node {self.id} is {self.replica_role()}, not {role}; stderr:\n{self.stderr()[-3000:]}")

    def serial(self):
        return _read(self.serial_path)

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)   # its own session: QEMU, or the witness and its reporting shell
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._admin:
            self._admin.close()
            self._admin = None


# --pin: each simulated host gets its own core, as each replica has its own host in a deployment. The primary
# (and the unreplicated guest) own core 0; the backup, the witness and the client share core 1.
PIN_CORES = {1: 0, 2: 1, 3: 1, "client": 1}


class Cluster:
    """mode: "plover" (the product), "checkpoint" (sync.mode checkpoint: the Remus baseline, a passive backup
    that receives every dirty page), "unreplicated" (one plain QEMU, no library: the baseline) or "probe" (one QEMU
    with the library in probe mode: dirty logging on, packets pass, the VM driven by hand through the admin socket).
    pin: run every process on its host's core (PIN_CORES) instead of letting all share every core.
    tcg_threads: "multi" (one host thread per vCPU) or "single"; icount: QEMU's -icount value (e.g.
    "shift=auto,sleep=on": guest time from the instruction count; needs single-threaded TCG) or None."""

    def __init__(self, work, mode="plover", mem="256M", smp=2, timeouts=None, sync=None, hashing_threads=0,
                 log=print, env=None, wrong_key_for=(), pin=False, tcg_threads="multi", icount=None, metrics=False, ucx=None,
                 guest_args="", disk=False):
        self.env = dict(env or os.environ)
        self.guest_args = guest_args   # more of the guest kernel's command line (tests-native/guest/init reads plover.*)
        self.disk = disk   # each VM gets a replicated virtio-blk disk (drives=data0): its own copy of one ext4 image
        self.ucx = ucx   # None: "transport": "tcp"; else the config's "ucx" section (e.g. {"env": {"UCX_TLS": "tcp"}})
        self.metrics_on = metrics
        for k in ("PLOVER_QEMU", "PLOVER_LIB", "PLOVER_CLI", "PLOVER_KERNEL", "PLOVER_INITRD"):
            if not self.env.get(k):
                raise RuntimeError(f"{k} is not set (run through ./build.sh, or export the lines of ./build.sh env)")
        if mode not in ("plover", "checkpoint", "unreplicated", "probe"):
            raise ValueError(f"unknown mode {mode}")
        if pin and (os.cpu_count() or 1) < 2:
            raise ValueError("pin needs at least 2 cores")
        self.pin = pin
        self.work, self.mode, self.mem, self.smp = work, mode, mem, smp
        if tcg_threads not in ("multi", "single") or (icount and tcg_threads != "single"):
            raise ValueError(f"tcg_threads {tcg_threads!r} with icount {icount!r}: icount needs single-threaded TCG")
        self.tcg_threads, self.icount = tcg_threads, icount
        self.timeouts = dict(TCG_TIMEOUTS if timeouts is None else timeouts)
        self.wrong_key_for = set(wrong_key_for)   # node ids that run with a key the others do not know (authentication tests)
        self.sync = dict(sync or {})
        if mode == "checkpoint":
            self.sync["mode"] = "checkpoint"
        self.hashing_threads = hashing_threads
        self.log = log
        self.prefix = f"plv{os.getpid()}"
        self.sw = f"{self.prefix}-sw"
        self.client_ns = f"{self.prefix}-cl"
        self.nodes = {1: Node(self, 1, "primary"), 2: Node(self, 2, "backup"), 3: Node(self, 3, "witness")}
        self.config_path = os.path.join(work, "cluster.json")
        self.observer_key_path = os.path.join(work, "observer.key")   # `plover status` authenticates as observer "e2e"
        self._namespaces = []
        self._bg = []

    # ------------------------------------------------------------------ network
    def _netns(self, name):
        sh("ip", "netns", "add", name)
        self._namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def _link_to_switch(self, ns, port):
        """A veth pair: eth0 in ns, `port` on the switch bridge."""
        sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.sw)
        sh("ip", "-n", self.sw, "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def setup_network(self):
        remove_stale_namespaces()
        self._netns(self.sw)
        sh("ip", "-n", self.sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        sh("ip", "-n", self.sw, "link", "set", "br0", "up")
        for n in self.nodes.values():
            self._netns(n.ns)
            self._link_to_switch(n.ns, f"n{n.id}")
            if n.role == "witness":
                sh("ip", "-n", n.ns, "addr", "add", f"{n.ip}/{SUBNET}", "dev", "eth0")
                continue
            # a VM host: its guest's tap and its own link on one bridge, the host address on the bridge
            sh("ip", "-n", n.ns, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
            sh("ip", "-n", n.ns, "tuntap", "add", "tap0", "mode", "tap")
            for dev in ("eth0", "tap0"):
                sh("ip", "-n", n.ns, "link", "set", dev, "master", "br0")
            sh("ip", "-n", n.ns, "link", "set", "tap0", "up")
            sh("ip", "-n", n.ns, "link", "set", "br0", "up")
            sh("ip", "-n", n.ns, "addr", "add", f"{n.ip}/{SUBNET}", "dev", "br0")
        self._netns(self.client_ns)
        self._link_to_switch(self.client_ns, "cl")
        sh("ip", "-n", self.client_ns, "addr", "add", f"{CLIENT_IP}/{SUBNET}", "dev", "eth0")

    def partition(self, node_id, cut=True):
        """Cuts (or restores) node_id's link to the switch: it can reach nobody and nobody reaches it."""
        sh("ip", "-n", self.sw, "link", "set", f"n{node_id}", "down" if cut else "up")

    # ------------------------------------------------------------------ processes
    def config_path_of(self, node):
        return self.config_path if node.id not in self.wrong_key_for else os.path.join(self.work, f"cluster-{node.id}.json")

    def keygen(self, path):
        """A new identity key pair made by `plover keygen` (the private key to path, mode 0600); its public key."""
        r = subprocess.run([self.env["PLOVER_CLI"], "keygen", path], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"plover keygen {path} failed: {r.stderr}")
        return r.stdout.strip()

    def key_path_of(self, node_id):
        return os.path.join(self.work, f"node{node_id}.key")

    def write_config(self):
        # Each node its own key pair, as on real hosts (here all on one file system, so each names its own keyFile);
        # the top-level keyFile is the observer's, for `plover status`.
        public = {n.id: self.keygen(self.key_path_of(n.id)) for n in self.nodes.values()}
        config = {
            "cluster": "e2e",
            "keyFile": self.observer_key_path,
            "observers": [{"name": "e2e", "publicKey": self.keygen(self.observer_key_path)}],
            "nodes": [{"id": n.id, "role": n.role, "address": f"{n.ip}:7400",
                       "publicKey": public[n.id], "keyFile": self.key_path_of(n.id),
                       **({"admin": n.admin_path} if n.role != "witness" else {}),
                       **({"metrics": f"{n.ip}:{METRICS_PORT}"} if self.metrics_on else {})} for n in self.nodes.values()],
            "hashing": {"threads": self.hashing_threads},
        }
        if self.timeouts:
            config["timeouts"] = self.timeouts
        if self.sync:
            config["sync"] = self.sync
        if self.mode == "probe":
            config["mode"] = "probe"
        if self.ucx is not None:
            config["transport"] = "ucx"
            config["ucx"] = self.ucx
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=2)
        for node_id in self.wrong_key_for:
            # This node runs with another key pair, consistently (its own config lists its new public key), but the
            # others' config lists the old one: they must refuse it.
            key = os.path.join(self.work, f"other-{node_id}.key")
            other_public = self.keygen(key)
            nodes = [{**n, "publicKey": other_public, "keyFile": key} if n["id"] == node_id else n for n in config["nodes"]]
            with open(self.config_path_of(self.nodes[node_id]), "w") as f:
                json.dump({**config, "nodes": nodes}, f, indent=2)

    def qemu_command(self, node):
        e = self.env
        cmd = [e["PLOVER_QEMU"], "-M", "pc", "-m", self.mem, "-smp", str(self.smp), "-accel", f"tcg,thread={self.tcg_threads}",
               *(["-icount", self.icount] if self.icount else []),
               "-display", "none", "-nodefaults", "-S", "-kernel", e["PLOVER_KERNEL"], "-initrd", e["PLOVER_INITRD"],
               "-append", f"console=ttyS0 quiet plover.ip={GUEST_IP}/{SUBNET} plover.redis=1{' ' + self.guest_args if self.guest_args else ''}",
               "-serial", f"file:{node.serial_path}", "-qmp", f"unix:{node.qmp_path},server=on,wait=off",
               "-qmp", f"unix:{node.qmp_events_path},server=on,wait=on",
               "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off",
               "-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC},romfile=", *FIRMWARE]
        if self.disk:
            cmd += ["-drive", f"file={self.disk_path_of(node)},format=raw,if=none,id=data0",
                    "-device", "virtio-blk-pci,drive=data0,id=vd0"]
        if self.mode == "unreplicated":
            return cmd[:cmd.index("-S")] + cmd[cmd.index("-S") + 1:]   # plain QEMU: starts at once
        if self.mode == "probe":   # the library does not start the guest in probe mode
            cmd = cmd[:cmd.index("-S")] + cmd[cmd.index("-S") + 1:]
        return cmd + ["-object", f"plover,id=ft0,lib={e['PLOVER_LIB']},role={node.role},config={self.config_path_of(node)},"
                                 f"node={node.id}{',drives=data0' if self.disk else ''}",
                      "-object", "filter-plover,id=pf0,netdev=n0,ft=ft0"]

    def start_node(self, node_id, env=None):
        n = self.nodes[node_id]
        n.incarnation += 1
        if n._admin is not None:   # a connection to an earlier incarnation that ended by itself
            n._admin.close()
            n._admin = None
        if n.incarnation > 1:   # a restart: keep the earlier incarnation's log
            n.stderr_path = os.path.join(self.work, f"node{node_id}.{n.incarnation}.stderr")
        if n.role == "witness":
            # through a shell that reports how the witness ended (a signal shows as 128 + its number)
            cmd = ["sh", "-c", 'w="$1"; shift; "$w" "$@"; echo "witness exited with status $?" >&2', "sh",
                   self.env["PLOVER_CLI"], "witness", "--config", self.config_path_of(n), "--node", str(n.id)]
        else:
            cmd = self.qemu_command(n)
        n.command = cmd
        with open(n.stderr_path, "w") as err:
            n.proc = subprocess.Popen(["ip", "netns", "exec", n.ns, *self._pinned(node_id), *cmd], env={**self.env, **(env or {})}, stdout=err, stderr=err,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        if n.role != "witness":
            QmpEvents(n.qmp_events_path, n.proc, n.incarnation, n.qmp_events)
        return n

    def start(self, wait=True, boot_timeout=240, nodes=(3, 2, 1), before_nodes=None):
        os.makedirs(self.work, exist_ok=True)
        for name in os.listdir(self.work):   # sockets and logs of an earlier run in the same folder
            if name.endswith((".sock", ".stderr", ".log")):
                os.unlink(os.path.join(self.work, name))
        _live.append(self)
        self.setup_network()
        if before_nodes:
            before_nodes(self)   # e.g. a capture that must see the guest's very first frame
        if self.disk:   # the replicas start from the same disk
            base = os.path.join(self.work, "disk-base.img")
            sh("truncate", "-s", "256M", base)
            sh("mkfs.ext4", "-q", "-F", base)
            for n in self.vm_nodes():
                shutil.copyfile(base, self.disk_path_of(n))
                for sidecar in (".plover-torn", ".plover-generation"):   # a fresh image has no history
                    if os.path.exists(self.disk_path_of(n) + sidecar):
                        os.unlink(self.disk_path_of(n) + sidecar)
        if self.mode == "unreplicated":
            self.start_node(1)
        elif self.mode == "probe":
            self.write_config()
            self.start_node(1)
        else:
            self.write_config()
            for node_id in nodes:
                self.start_node(node_id)
        if wait:
            self.wait_service(boot_timeout)
        return self

    def disk_path_of(self, node):
        return os.path.join(self.work, f"disk-{node.id}.img")

    def vm_nodes(self):
        return [self.nodes[1]] if self.mode in ("unreplicated", "probe") else [self.nodes[1], self.nodes[2]]

    def wait_service(self, timeout=240):
        """Until redis in the guest answers PING from the client namespace."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for n in self.vm_nodes() + ([self.nodes[3]] if self.mode != "unreplicated" else []):
                if n.proc is not None and not n.alive():
                    raise RuntimeError(f"node {n.id} exited with {n.proc.returncode}:\n{n.stderr()[-4000:]}")
            r = subprocess.run(["ip", "netns", "exec", self.client_ns, "timeout", "5", "redis-cli", "-h", GUEST_IP,
                                "PING"], capture_output=True, text=True, timeout=30)
            if r.stdout.strip() == "PONG":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the guest's redis did not answer within {timeout} s; primary serial:\n"
                           f"{self.nodes[1].serial()[-3000:]}\nprimary stderr:\n{self.nodes[1].stderr()[-3000:]}")

    def _pinned(self, who):
        """taskset prefix for a process of host `who` (a node id or "client"); threads inherit the affinity."""
        return ["taskset", "-c", str(PIN_CORES[who])] if self.pin else []

    # ------------------------------------------------------------------ the client side
    def client(self, *cmd, timeout=600, check=True):
        r = subprocess.run(["ip", "netns", "exec", self.client_ns, *self._pinned("client"), *cmd], capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"client {' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-2000:]}")
        return r.stdout

    def redis_check(self, *args, timeout=600):
        """tests-native/cluster/redis_check.py in the client namespace; its JSON result."""
        here = os.path.dirname(os.path.abspath(__file__))
        return json.loads(self.client("python3", os.path.join(here, "redis_check.py"), args[0], GUEST_IP,
                                      *map(str, args[1:]), timeout=timeout))

    def status(self, timeout=60):
        """`plover status --json` from the client namespace (an operator's machine on the cluster's network):
        (exit code, the JSON report, stderr)."""
        r = subprocess.run(["ip", "netns", "exec", self.client_ns, self.env["PLOVER_CLI"], "status", "--config",
                            self.config_path, "--json"], capture_output=True, text=True, timeout=timeout)
        return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}, r.stderr

    def metrics(self, node_id, timeout=10):
        """A scrape of node_id's Prometheus endpoint from the client namespace (Cluster(metrics=True)):
        {series: value}, series as written ('plover_role{role="primary"}')."""
        text = self.client("curl", "-sS", "--fail", "--max-time", str(timeout),
                           f"http://{self.nodes[node_id].ip}:{METRICS_PORT}/metrics", timeout=timeout + 5)
        return parse_metrics(text)

    def traffic(self):
        """Bytes every reachable node has sent so far by (channel, kind), summed over the nodes (whole frames)."""
        totals = {}
        for node in self.status()[1].get("nodes", []):
            for t in node.get("traffic", []):
                key = (t["channel"], t["kind"])
                totals[key] = totals.get(key, 0) + t["sentBytes"]
        return totals

    def client_popen(self, *cmd, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.client_ns, *cmd], **kw)
        self._bg.append(p)
        return p

    def capture(self, path):
        """tcpdump in the client namespace of every frame from the guest's MAC (stop with stop_capture)."""
        # a large kernel buffer and short snapshots: under load on two cores a default capture drops frames, and
        # the output-guard check needs every one (their times, not their contents)
        p = self.client_popen("tcpdump", "-i", "eth0", "-U", "-n", "-B", "32768", "-s", "96", "-w", path, "ether",
                              "src", GUEST_MAC,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 10
        while time.time() < deadline:   # tcpdump says "listening on" once the socket is open
            line = p.stderr.readline()
            if "listening on" in line:
                return p
        raise RuntimeError("tcpdump did not start")

    @staticmethod
    def stop_capture(p):
        """Stops a capture; returns the time it stopped (Unix microseconds). p.dropped: frames the kernel dropped."""
        stopped = int(time.time() * 1e6)
        if p.poll() is None:
            # tcpdump stops reading at SIGINT: what the kernel holds for it then is lost, so let it drain first
            # (frames stamped after `stopped` are the checker's to ignore)
            time.sleep(1.0)
            p.send_signal(signal.SIGINT)
        try:
            rest = p.stderr.read()   # tcpdump's summary: "N packets dropped by kernel"
            p.wait(timeout=10)
        finally:
            p.stderr.close()
        m = re.search(r"(\d+) packets? dropped by kernel", rest or "")
        p.dropped = int(m.group(1)) if m else 0
        return stopped

    # ------------------------------------------------------------------ teardown
    def stop(self):
        for p in self._bg:
            if p.poll() is None:
                p.kill()
                p.wait()
        self._bg.clear()
        for n in self.nodes.values():
            if n.alive():
                n.kill(signal.SIGTERM)
        for ns in reversed(self._namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self._namespaces.clear()
        if self in _live:
            _live.remove(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def parse_metrics(text):
    """The Prometheus text format: {series: value} for every sample line (comments skipped)."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        samples[series] = float(value)
    return samples


def _teardown_all(*_):
    for c in list(_live):
        try:
            c.stop()
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            print(f"cluster cleanup: {e}")


def _on_signal(signum, _frame):
    _teardown_all()
    raise SystemExit(128 + signum)


atexit.register(_teardown_all)
for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, _on_signal)
