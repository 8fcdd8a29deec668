"""libvirt runs a Plover VM (issue 17 item 3): Debian's libvirtd, the domain XML of docs/libvirt/plover-primary.xml
(its paths replaced by the build's), the patched QEMU as emulator.

libvirtd runs privately: in a network namespace of its own (with the tap the domain names) and with /etc/libvirt,
/run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt bound to a temporary folder (`ip netns exec`
gives it a mount namespace), so nothing of this host's libvirt is used or changed; virsh reaches it through
qemu:///system?socket=... . No cluster runs: the node waits for its peers (startupMs is long) with the guest not
started, which is what is checked: libvirt's start (QEMU with -S, then 'cont') succeeds without starting the guest
behind Plover's back, query-plover answers through libvirt, and virsh suspend, reset and shutdown are refused with
Plover's reason. Run by ctest (e2e.Libvirt) as root with ./build.sh env's variables; skipped (with the reason) when
libvirtd or virsh is missing. PLOVER_KEEP_TEST_DIRS=1 keeps the folder (libvirtd's and QEMU's logs).
"""
import json
import os
import shutil
import socket
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
PRIVATE_DIRS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt", "cache": "/var/cache/libvirt",
                "log": "/var/log/libvirt"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LibvirtRunsAPloverVm(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = [tool for tool in ("libvirtd", "virsh") if not shutil.which(tool)]
        if missing:
            raise unittest.SkipTest(f"skipped: {', '.join(missing)} not installed (./build.sh setup installs "
                                    f"libvirt-daemon-driver-qemu and libvirt-clients)")
        cls.env = os.environ
        for k in ("PLOVER_QEMU", "PLOVER_LIB", "PLOVER_CLI", "PLOVER_KERNEL", "PLOVER_INITRD"):
            if not cls.env.get(k):
                raise RuntimeError(f"{k} is not set (run through ./build.sh, or export the lines of ./build.sh env)")
        cls.work = tempfile.mkdtemp(prefix="plover-e2e-libvirt.")
        cls.ns = f"plvlv{os.getpid()}"
        cls.name = f"plover-e2e-{os.getpid()}"
        cls.libvirtd = None
        cls.domain_path = os.path.join(cls.work, "domain.xml")
        try:
            cls.start_libvirtd()
            cls.write_cluster()
            cls.write_domain()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.libvirtd is not None:
            cls.virsh("destroy", cls.name, check=False)
            cls.virsh("undefine", cls.name, check=False)
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
        subprocess.run(["ip", "-n", cls.ns, "tuntap", "add", "tap0", "mode", "tap"], check=True)
        subprocess.run(["ip", "-n", cls.ns, "link", "set", "tap0", "up"], check=True)
        binds = " ".join(f"mount --bind {d[k]} {target} &&" for k, target in PRIVATE_DIRS.items())
        cls.log_path = os.path.join(cls.work, "libvirtd.log")
        with open(cls.log_path, "w") as log:
            cls.libvirtd = subprocess.Popen(
                ["ip", "netns", "exec", cls.ns, "sh", "-c",
                 f"mkdir -p {' '.join(PRIVATE_DIRS.values())} && {binds} exec libvirtd -f {d['etc']}/libvirtd.conf"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        cls.uri = f"qemu:///system?socket={d['run']}/libvirt-sock"
        deadline = time.time() + 60
        while cls.virsh("version", check=False).returncode != 0:
            if cls.libvirtd.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"libvirtd did not come up:\n{open(cls.log_path).read()[-3000:]}")
            time.sleep(0.5)

    @classmethod
    def keygen(cls, path):
        r = subprocess.run([cls.env["PLOVER_CLI"], "keygen", path], capture_output=True, text=True, timeout=60,
                           check=True)
        return r.stdout.strip()

    @classmethod
    def write_cluster(cls):
        cls.config_path = os.path.join(cls.work, "cluster.json")
        cls.admin_path = os.path.join(cls.work, "admin-1.sock")
        nodes = []
        for node_id, role in ((1, "primary"), (2, "backup"), (3, "witness")):
            key = os.path.join(cls.work, f"node{node_id}.key")
            nodes.append({"id": node_id, "role": role, "address": f"127.0.0.1:{free_port()}",
                          "publicKey": cls.keygen(key), "keyFile": key,
                          **({"admin": cls.admin_path} if node_id == 1 else {})})
        # nobody else runs: the node waits for its peers for as long as the test needs
        config = {"cluster": "libvirt", "nodes": nodes, "timeouts": {"startupMs": 600000}}
        with open(cls.config_path, "w") as f:
            json.dump(config, f, indent=2)

    @classmethod
    def write_domain(cls):
        """The documented domain with this build's paths: TCG (type qemu), a small guest, the firmware folders."""
        tree = ET.parse(DOMAIN_XML)
        root = tree.getroot()
        root.set("type", "qemu")
        root.find("name").text = cls.name
        root.find("memory").text = "256"
        root.find("vcpu").text = "1"
        root.find("os/kernel").text = cls.env["PLOVER_KERNEL"]
        root.find("os/initrd").text = cls.env["PLOVER_INITRD"]
        root.find("devices/emulator").text = cls.env["PLOVER_QEMU"]
        cmdline = root.find(f"{{{QEMU_NS}}}commandline")
        args = cmdline.findall(f"{{{QEMU_NS}}}arg")
        plover = [a for a in args if a.get("value").startswith("plover,")]
        assert len(plover) == 1, "the documented XML has one plover object"
        plover[0].set("value", plover[0].get("value")
                      .replace("/opt/plover/lib/libplover.so", cls.env["PLOVER_LIB"])
                      .replace("/etc/plover/cluster.json", cls.config_path))
        for folder in FIRMWARE:
            for value in ("-L", folder):
                ET.SubElement(cmdline, f"{{{QEMU_NS}}}arg", value=value)
        ET.register_namespace("qemu", QEMU_NS)
        tree.write(cls.domain_path)

    @classmethod
    def virsh(cls, *args, check=True):
        r = subprocess.run(["virsh", "-c", cls.uri, *args], capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"virsh {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}\n"
                                 f"libvirtd log:\n{open(cls.log_path).read()[-2000:]}")
        return r

    def qmp(self, command):
        r = self.virsh("qemu-monitor-command", self.name, json.dumps({"execute": command}))
        return json.loads(r.stdout)

    def qemu_log(self):
        path = os.path.join(self.work, "log", "qemu", f"{self.name}.log")
        return open(path).read()[-3000:] if os.path.exists(path) else "(no QEMU log)"

    # ------------------------------------------------------------------ checks, in order
    def test_1_the_command_line_libvirt_makes_has_both_objects_and_what_plover_needs(self):
        argv = self.virsh("domxml-to-native", "qemu-argv", self.domain_path).stdout
        self.assertIn(f"-object plover,id=ft0,lib={self.env['PLOVER_LIB']},role=primary,config={self.config_path},node=1",
                      argv)
        self.assertIn("-object filter-plover,id=pf0,netdev=hostnet0,ft=ft0", argv)
        self.assertRegex(argv, r'"id":"hostnet0"|id=hostnet0', "the first NIC's netdev is hostnet0")
        self.assertRegex(argv, r'"vhost":false|vhost=off', "vhost off")
        self.assertIn(" -S ", argv, "libvirt starts QEMU stopped (and sends cont)")
        self.assertNotIn("virtio-balloon", argv)
        self.assertIn("mac=52:54:00:00:00:01", argv.replace('"mac":"', "mac=").replace('"', ""))

    def test_2_libvirt_starts_the_domain_and_the_guest_waits_for_the_cluster(self):
        self.virsh("define", self.domain_path)
        self.virsh("start", self.name)   # QEMU -S, then cont: Plover accepts it
        state = self.virsh("domstate", self.name).stdout.strip()
        self.assertEqual("running", state, self.qemu_log())
        # cont was accepted without effect: the guest has not run, Plover starts it once its peers are up
        status = self.qmp("query-status")["return"]
        self.assertEqual(("prelaunch", False), (status["status"], status["running"]), status)
        r = self.qmp("query-plover")["return"]
        self.assertEqual(("starting", "replicate", 1, False), (r["role"], r["mode"], r["node"], r["protected"]), r)
        self.assertIn("start-up probe", r["problem"], r)
        self.assertIn("loaded", self.qemu_log())

    def test_3_virsh_suspend_reset_and_shutdown_are_refused_with_plovers_reason(self):
        for args, command in ((("suspend",), "stop"), (("reset",), "system_reset"),
                              (("shutdown", "--mode", "acpi"), "system_powerdown")):
            r = self.virsh(*args, self.name, check=False)
            self.assertNotEqual(0, r.returncode, f"virsh {args[0]} succeeded")
            self.assertIn(f"'{command}' is refused: Plover replicates this VM (node 1, starting)", r.stderr, r.stderr)
        self.assertEqual("running", self.virsh("domstate", self.name).stdout.strip())
        self.assertEqual("prelaunch", self.qmp("query-status")["return"]["status"])

    def test_4_virsh_destroy_ends_it(self):
        self.virsh("destroy", self.name)
        self.assertEqual("shut off", self.virsh("domstate", self.name).stdout.strip())
        self.virsh("undefine", self.name)


if __name__ == "__main__":
    unittest.main()
