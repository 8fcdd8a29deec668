"""libvirt runs a Plover cluster (issue 17 item 3): Debian's libvirtd, the domain XML of docs/libvirt/plover-primary.xml
(its paths replaced by the build's) for the primary, the same XML with role=backup,node=2 for the backup, the patched
QEMU as emulator, and `plover witness` beside them.

libvirtd runs privately: in a network namespace of its own (with the two taps the domains name; the three nodes talk
over its loopback) and with /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt
bound to a temporary folder (`ip netns exec` gives it a mount namespace), so nothing of this host's libvirt is used or
changed; virsh reaches it through qemu:///system?socket=... . Checked: the command line libvirt makes; libvirt's
start (QEMU with -S, then 'cont') leaves the guest to Plover, which starts it once the cluster is up (libvirt shows
the domain paused until then); query-plover through libvirt; under a client's load (redis-benchmark from the
namespace through the primary's tap), with syncs stopping the guests every few milliseconds, libvirt reports both
domains running at every look and QEMU sends libvirt no STOP or RESUME event (patch 0010); virsh suspend, reset and
shutdown (and HMP's stop) refused with Plover's reason while the guest keeps running; virsh destroy. Run by ctest (e2e.Libvirt) as root with ./build.sh env's
variables; skipped (with the reason) when libvirtd or virsh is missing. PLOVER_KEEP_TEST_DIRS=1 keeps the folder.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
DOMAIN_XML = os.path.join(HERE, "..", "..", "docs", "libvirt", "plover-primary.xml")
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
FIRMWARE = ["/usr/share/seabios", "/usr/lib/ipxe/qemu", "/usr/share/qemu"]
GUEST_IP, CLIENT_IP = "10.77.0.100", "10.77.0.10"   # the guest's redis, reached through the primary's tap0
PRIVATE_DIRS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt", "cache": "/var/cache/libvirt",
                "log": "/var/log/libvirt"}


class LibvirtRunsAPloverVm(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = [tool for tool in ("libvirtd", "virsh") if not shutil.which(tool)]
        if missing:
            raise unittest.SkipTest(f"skipped: {', '.join(missing)} not installed (./build.sh setup installs "
                                    f"libvirt-daemon-system, libvirt-daemon-driver-qemu and libvirt-clients)")
        cls.env = os.environ
        for k in ("PLOVER_QEMU", "PLOVER_LIB", "PLOVER_CLI", "PLOVER_KERNEL", "PLOVER_INITRD"):
            if not cls.env.get(k):
                raise RuntimeError(f"{k} is not set (run through ./build.sh, or export the lines of ./build.sh env)")
        cls.work = tempfile.mkdtemp(prefix="plover-e2e-libvirt.")
        cls.ns = f"plvlv{os.getpid()}"
        cls.name = f"plover-e2e-{os.getpid()}"
        cls.backup_name = f"plover-e2e-{os.getpid()}-backup"
        cls.libvirtd = cls.witness = None
        cls.domain_path = os.path.join(cls.work, "domain.xml")
        cls.backup_path = os.path.join(cls.work, "domain-backup.xml")
        try:
            cls.start_libvirtd()
            cls.write_cluster()
            cls.write_domain(cls.domain_path, cls.name, "tap0", "primary", 1)
            cls.write_domain(cls.backup_path, cls.backup_name, "tap1", "backup", 2)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.witness is not None:
            cls.witness.terminate()
            cls.witness.wait(timeout=30)
        if cls.libvirtd is not None:
            for name in (cls.name, cls.backup_name):
                cls.virsh("destroy", name, check=False)
                cls.virsh("undefine", name, check=False)
            cls.libvirtd.terminate()
            try:
                cls.libvirtd.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cls.libvirtd.kill()
                cls.libvirtd.wait()
        subprocess.run(["ip", "netns", "del", cls.ns], capture_output=True)
        if os.environ.get("PLOVER_KEEP_TEST_DIRS"):
            print(f"kept {cls.work}", file=sys.stderr)
        else:
            shutil.rmtree(cls.work, ignore_errors=True)

    # ------------------------------------------------------------------ set-up
    @classmethod
    def start_libvirtd(cls):
        d = {k: os.path.join(cls.work, k) for k in PRIVATE_DIRS}
        for path in d.values():
            os.makedirs(path)
        with open(os.path.join(d["etc"], "libvirtd.conf"), "w") as f:
            f.write('auth_unix_rw = "none"\nauth_unix_ro = "none"\nunix_sock_group = "root"\n')
        # QEMU as root, no security driver, no private /dev or cgroups (a container may not allow them), stdio to
        # a file (no virtlogd)
        with open(os.path.join(d["etc"], "qemu.conf"), "w") as f:
            f.write('user = "root"\ngroup = "root"\nsecurity_driver = "none"\nnamespaces = [ ]\n'
                    'cgroup_controllers = [ ]\nstdio_handler = "file"\nremember_owner = 0\n')
        subprocess.run(["ip", "netns", "add", cls.ns], check=True)
        subprocess.run(["ip", "-n", cls.ns, "link", "set", "lo", "up"], check=True)
        for tap in ("tap0", "tap1"):
            subprocess.run(["ip", "-n", cls.ns, "tuntap", "add", tap, "mode", "tap"], check=True)
            subprocess.run(["ip", "-n", cls.ns, "link", "set", tap, "up"], check=True)
        # the client side of the primary's NIC (the backup's tap1 stays unaddressed: its guest gets the primary's
        # inputs from the log, and its output is discarded)
        subprocess.run(["ip", "-n", cls.ns, "addr", "add", f"{CLIENT_IP}/24", "dev", "tap0"], check=True)
        binds = " ".join(f"mount --bind {d[k]} {target} &&" for k, target in PRIVATE_DIRS.items())
        cls.log_path = os.path.join(cls.work, "libvirtd.log")
        with open(cls.log_path, "w") as log:
            cls.libvirtd = subprocess.Popen(
                ["ip", "netns", "exec", cls.ns, "sh", "-c",
                 f"mkdir -p {' '.join(PRIVATE_DIRS.values())} && {binds} exec libvirtd -f {d['etc']}/libvirtd.conf"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        cls.uri = f"qemu:///system?socket={d['run']}/libvirt-sock"
        deadline = time.time() + 60
        while cls.virsh("list", "--all", check=False).returncode != 0:
            if cls.libvirtd.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"libvirtd did not come up:\n{cls.read(cls.log_path)[-3000:]}")
            time.sleep(0.5)

    @staticmethod
    def read(path):
        with open(path, errors="replace") as f:
            return f.read()

    @classmethod
    def keygen(cls, path):
        r = subprocess.run([cls.env["PLOVER_CLI"], "keygen", path], capture_output=True, text=True, timeout=60,
                           check=True)
        return r.stdout.strip()

    @classmethod
    def write_cluster(cls):
        cls.config_path = os.path.join(cls.work, "cluster.json")
        nodes = []
        for node_id, role in ((1, "primary"), (2, "backup"), (3, "witness")):
            key = os.path.join(cls.work, f"node{node_id}.key")
            # the namespace's loopback, where nothing else listens (a replica's sync link is its port + 1)
            nodes.append({"id": node_id, "role": role, "address": f"127.0.0.1:{7400 + 2 * node_id}",
                          "publicKey": cls.keygen(key), "keyFile": key,
                          **({"admin": os.path.join(cls.work, f"admin-{node_id}.sock")} if node_id != 3 else {})})
        # TCG timers (as the cluster harness); the primary is started a little before the witness
        config = {"cluster": "libvirt", "nodes": nodes,
                  "timeouts": {"heartbeatMs": 10, "electionMinMs": 200, "electionMaxMs": 400, "startupMs": 120000}}
        with open(cls.config_path, "w") as f:
            json.dump(config, f, indent=2)

    @classmethod
    def write_domain(cls, path, name, tap, role, node):
        """The documented domain with this build's paths: TCG (type qemu), a small guest, the firmware folders; the
        backup's differs only in its name, tap and the plover object's role and node."""
        tree = ET.parse(DOMAIN_XML)
        root = tree.getroot()
        root.set("type", "qemu")
        root.find("name").text = name
        root.find("devices/interface/target").set("dev", tap)
        root.find("memory").text = "256"
        root.find("vcpu").text = "1"
        root.find("os/kernel").text = cls.env["PLOVER_KERNEL"]
        root.find("os/initrd").text = cls.env["PLOVER_INITRD"]
        root.find("os/cmdline").text = f"console=ttyS0 quiet plover.ip={GUEST_IP}/24 plover.redis=1"
        root.find("devices/emulator").text = cls.env["PLOVER_QEMU"]
        cmdline = root.find(f"{{{QEMU_NS}}}commandline")
        args = cmdline.findall(f"{{{QEMU_NS}}}arg")
        plover = [a for a in args if a.get("value").startswith("plover,")]
        assert len(plover) == 1, "the documented XML has one plover object"
        plover[0].set("value", plover[0].get("value")
                      .replace("/opt/plover/lib/libplover.so", cls.env["PLOVER_LIB"])
                      .replace("/etc/plover/cluster.json", cls.config_path)
                      .replace("role=primary,", f"role={role},").replace("node=1", f"node={node}"))
        for folder in FIRMWARE:
            for value in ("-L", folder):
                ET.SubElement(cmdline, f"{{{QEMU_NS}}}arg", value=value)
        ET.register_namespace("qemu", QEMU_NS)
        tree.write(path)

    @classmethod
    def virsh(cls, *args, check=True):
        r = subprocess.run(["virsh", "-c", cls.uri, *args], capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"virsh {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}\n"
                                 f"libvirtd log:\n{cls.read(cls.log_path)[-2000:]}")
        return r

    def qmp(self, command, name=None):
        r = self.virsh("qemu-monitor-command", name or self.name, json.dumps({"execute": command}))
        return json.loads(r.stdout)

    def qemu_log(self, name=None):
        path = os.path.join(self.work, "log", "qemu", f"{name or self.name}.log")
        return self.read(path)[-3000:] if os.path.exists(path) else "(no QEMU log)"

    def wait(self, what, check, timeout=180):
        deadline = time.time() + timeout
        while not check():
            if time.time() > deadline:
                self.fail(f"{what} within {timeout} s; primary's log:\n{self.qemu_log()}\nbackup's log:\n"
                          f"{self.qemu_log(self.backup_name)}")
            time.sleep(0.5)

    # ------------------------------------------------------------------ checks, in order
    def test_1_the_command_line_libvirt_makes_has_both_objects_and_what_plover_needs(self):
        argv = self.virsh("domxml-to-native", "qemu-argv", self.domain_path).stdout
        self.assertIn(f"-object plover,id=ft0,lib={self.env['PLOVER_LIB']},role=primary,config={self.config_path},node=1",
                      argv)
        self.assertIn("-object filter-plover,id=pf0,netdev=hostnet0,ft=ft0", argv)
        self.assertIn('"id":"hostnet0"', argv, "the first NIC's netdev is hostnet0")
        self.assertNotRegex(argv, r'"vhost":true|vhost=on', "vhost stays off (<driver name='qemu'/>)")
        self.assertIn(" -S ", argv, "libvirt starts QEMU stopped (and sends cont)")
        self.assertNotIn("virtio-balloon", argv)
        self.assertIn('"mac":"52:54:00:00:00:01"', argv)

    def test_2_libvirt_starts_both_replicas_and_plover_starts_the_guest_once_the_cluster_is_up(self):
        for path, name in ((self.backup_path, self.backup_name), (self.domain_path, self.name)):
            self.virsh("define", path)
            self.virsh("start", name)   # QEMU -S, then cont: Plover accepts it and does nothing
        # cont did not start the guest behind Plover's back: no cluster yet (libvirt says paused)
        status = self.qmp("query-status")["return"]
        self.assertEqual(("prelaunch", False), (status["status"], status["running"]), status)
        self.assertEqual("paused", self.virsh("domstate", self.name).stdout.strip())
        self.assertEqual("starting", self.qmp("query-plover")["return"]["role"])
        with open(os.path.join(self.work, "witness.log"), "w") as log:
            type(self).witness = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, self.env["PLOVER_CLI"], "witness", "--config", self.config_path,
                 "--node", "3"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait("the primary protected by node 2", lambda: self.qmp("query-plover")["return"].get("protected"))
        r = self.qmp("query-plover")["return"]
        self.assertEqual(("primary", "replicate", 1, 2, True), (r["role"], r["mode"], r["node"], r["backup"], r["sync-link"]), r)
        self.assertEqual("backup", self.qmp("query-plover", self.backup_name)["return"]["role"])
        # Plover started the guests; libvirt saw QEMU's RESUME
        self.wait("libvirt shows the primary running", lambda: self.virsh("domstate", self.name).stdout.strip() == "running")
        self.wait("a sync completed", lambda: "last-sync" in self.qmp("query-plover")["return"], timeout=120)

    def in_ns(self, *cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], capture_output=True, text=True, **kw)

    def test_3_libvirt_sees_both_domains_running_throughout_the_syncs_of_a_load(self):
        # Plover stops both guests at every sync; QEMU hides these stops (patch 0010), so libvirt, which follows
        # QEMU's STOP/RESUME events, never sees the domains paused
        self.wait("the guest's redis answers", lambda: self.in_ns("timeout", "5", "redis-cli", "-h", GUEST_IP,
                                                                  "PING", timeout=30).stdout.strip() == "PONG")
        self.wait("libvirt shows the backup running (Plover started its guest)",
                  lambda: self.virsh("domstate", self.backup_name).stdout.strip() == "running", timeout=60)
        events_path = os.path.join(self.work, "run-state-events.txt")
        with open(events_path, "w") as out:
            watchers = [subprocess.Popen(["virsh", "-c", self.uri, "qemu-monitor-event", name, "--loop", "--timestamp",
                                          "--regex", "^(STOP|RESUME)$"], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL) for name in (self.name, self.backup_name)]
        bench = None
        try:
            time.sleep(2)   # the watchers registered
            syncs_before = self.qmp("query-plover")["return"]["counters"]["syncs-completed"]
            bench = subprocess.Popen(["ip", "netns", "exec", self.ns, "redis-benchmark", "-h", GUEST_IP, "-t", "SET",
                                      "-P", "16", "-r", "100000", "-n", "100000000", "-q"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            looks = []
            for _ in range(40):
                looks += [("domstate", name, self.virsh("domstate", name).stdout.strip())
                          for name in (self.name, self.backup_name)]
                status = self.qmp("query-status")["return"]
                looks.append(("query-status", self.name, f"{status['status']} {status['running']}"))
            self.assertIsNone(bench.poll(), f"the client's load ran throughout: {bench.stderr.read() if bench.poll() is not None else ''}")
            syncs = self.qmp("query-plover")["return"]["counters"]["syncs-completed"] - syncs_before
        finally:
            if bench is not None:
                bench.terminate()
                bench.wait(30)
                bench.stderr.close()
            time.sleep(1)   # events still in flight reach the watchers
            for w in watchers:
                w.terminate()
                w.wait(30)
        self.assertGreater(syncs, 10, "syncs happened while libvirt was asked")
        wrong = [look for look in looks if look[2] not in ("running", "running True")]
        self.assertEqual([], wrong, f"{len(wrong)} of {len(looks)} looks during {syncs} syncs did not see the domain running")
        events = [line for line in self.read(events_path).splitlines() if "STOP" in line or "RESUME" in line]
        self.assertEqual([], events[:10], f"{len(events)} STOP/RESUME events during {syncs} syncs")
        print(f"libvirt under load: {len(looks)} looks at both domains during {syncs} syncs, all running; no "
              f"STOP/RESUME event", file=sys.stderr)

    def test_4_virsh_suspend_reset_and_shutdown_are_refused_with_plovers_reason(self):
        # (libvirt sees the domains running during syncs too: a refusal comes from QEMU, never from libvirt's
        # "domain is not running")
        for args, command in ((("suspend",), "stop"), (("reset",), "system_reset"),
                              (("shutdown", "--mode", "acpi"), "system_powerdown")):
            for name, role in ((self.name, "node 1, primary"), (self.backup_name, "node 2, backup")):
                r = self.virsh(*args, name, check=False)
                self.assertNotEqual(0, r.returncode, f"virsh {args[0]} {name} succeeded")
                self.assertIn(f"'{command}' is refused: Plover replicates this VM ({role})", r.stderr, r.stderr)
        # HMP through libvirt prints the same refusal
        out = self.virsh("qemu-monitor-command", self.name, "--hmp", "stop").stdout
        self.assertIn("plover: 'stop' is refused: Plover replicates this VM (node 1, primary)", out)
        self.assertEqual("running", self.virsh("domstate", self.name).stdout.strip())
        self.assertTrue(self.qmp("query-plover")["return"]["protected"])

    def test_5_virsh_destroy_ends_it(self):
        for name in (self.name, self.backup_name):
            self.virsh("destroy", name)
            self.assertEqual("shut off", self.virsh("domstate", name).stdout.strip())
            self.virsh("undefine", name)

if __name__ == "__main__":
    unittest.main()
