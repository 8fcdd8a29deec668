// qemu_harness.h - drive a real patched QEMU from GoogleTest: start it, talk QMP and the library's admin socket,
// exchange raw Ethernet frames with its netdev over UDP (-netdev dgram), read its serial console.
//
// Paths come from the environment that `./build.sh test` exports (see `./build.sh env`):
//   PLOVER_QEMU, PLOVER_LIB, PLOVER_KERNEL, PLOVER_INITRD.
#pragma once
#include "../test_keys.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace harness {

using json = nlohmann::json;
using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

inline std::string env(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) throw std::runtime_error(std::string("environment variable ") + name + " is not set (run ./build.sh test)");
    return v;
}

inline std::string read_file(const std::string &path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

inline void write_file(const std::string &path, const std::string &text) {
    std::ofstream f(path);
    f << text;
}

// A fresh temporary directory, removed with its contents at destruction.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/plover-test.XXXXXX";
        if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    ~TempDir() {
        if (getenv("PLOVER_KEEP_TEST_DIRS")) return;  // for debugging: QEMU logs, serial output, configs
        std::string cmd = "rm -rf '" + path + "'";
        (void)system(cmd.c_str());
    }
    std::string operator/(const std::string &name) const { return path + "/" + name; }
};

// A probe-mode cluster config (node 1 primary with an admin socket, 2 backup, 3 witness) and the nodes' key files.
inline std::string write_cluster_config(const TempDir &dir, const std::string &admin_path, int base_port = 17400) {
    for (int id = 1; id <= 3; id++) plover_test::WriteNodeKey(dir / ("node" + std::to_string(id) + ".key"), id);
    auto node = [&](int id, const char *role) {
        json n = {{"id", id}, {"role", role}, {"address", "127.0.0.1:" + std::to_string(base_port + id)},
                  {"publicKey", plover_test::kNodePublicKey[id - 1]}, {"keyFile", "node" + std::to_string(id) + ".key"}};
        return n;
    };
    json n1 = node(1, "primary");
    n1["admin"] = admin_path;
    json cfg = {
        {"cluster", "test"},
        {"mode", "probe"},  // these tests drive the VM by hand through the admin socket
        {"nodes", {n1, node(2, "backup"), node(3, "witness")}},
    };
    std::string path = dir / "cluster.json";
    write_file(path, cfg.dump(2));
    return path;
}

// A connected Unix stream socket speaking one line per message.
class LineSocket {
  public:
    LineSocket() = default;
    LineSocket(const LineSocket &) = delete;
    ~LineSocket() { close(); }

    void connect(const std::string &path, std::chrono::milliseconds timeout = 20s) {
        auto deadline = clock::now() + timeout;
        for (;;) {
            fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
            if (::connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0) return;
            ::close(fd_);
            fd_ = -1;
            if (clock::now() > deadline) throw std::runtime_error("cannot connect to " + path);
            std::this_thread::sleep_for(50ms);
        }
    }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    void send_line(const std::string &line) {
        std::string data = line + "\n";
        if (::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) != ssize_t(data.size())) throw std::runtime_error("send failed");
    }
    std::string read_line(std::chrono::milliseconds timeout = 60s) {
        auto deadline = clock::now() + timeout;
        for (;;) {
            auto nl = buf_.find('\n');
            if (nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return line;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
            if (left <= 0) throw std::runtime_error("timed out waiting for a reply");
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, int(left)) <= 0) continue;
            char tmp[65536];
            ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
            if (n <= 0) throw std::runtime_error("connection closed");
            buf_.append(tmp, size_t(n));
        }
    }

  private:
    int fd_ = -1;
    std::string buf_;
};

// The library's admin socket: one command line in, one JSON object out.
class Admin {
  public:
    void connect(const std::string &path) { sock_.connect(path); }
    json call(const std::string &command) {
        sock_.send_line(command);
        return json::parse(sock_.read_line());
    }
    // call() that must succeed
    json ok(const std::string &command) {
        json r = call(command);
        if (!r.value("ok", false)) throw std::runtime_error("admin '" + command + "' failed: " + r.dump());
        return r;
    }

  private:
    LineSocket sock_;
};

// QMP: greeting, capabilities, then execute commands (the events read meanwhile are kept for take_events).
class Qmp {
  public:
    void connect(const std::string &path) {
        sock_.connect(path);
        (void)json::parse(sock_.read_line());  // greeting
        execute("qmp_capabilities");
    }
    json execute(const std::string &cmd, const json &args = json::object()) {
        json req = {{"execute", cmd}};
        if (!args.empty()) req["arguments"] = args;
        sock_.send_line(req.dump());
        for (;;) {
            json r = json::parse(sock_.read_line());
            if (r.contains("return")) return r["return"];
            if (r.contains("error")) throw std::runtime_error("QMP " + cmd + ": " + r["error"].dump());
            if (r.contains("event")) events_.push_back(r["event"].get<std::string>());
        }
    }
    // The names of the events QEMU sent before the last reply, oldest first; forgets them.
    std::vector<std::string> take_events() {
        execute("query-name");  // a round trip: every event sent before it has been read
        std::vector<std::string> e;
        e.swap(events_);
        return e;
    }

  private:
    LineSocket sock_;
    std::vector<std::string> events_;
};

// qtest protocol (-qtest unix:PATH): "writeb ADDR VAL" -> "OK".
class Qtest {
  public:
    void connect_listening(const std::string &path) { sock_.connect(path); }
    std::string command(const std::string &line) {
        sock_.send_line(line);
        for (;;) {
            std::string r = sock_.read_line();
            if (r.rfind("IRQ", 0) == 0) continue;  // asynchronous interrupt notifications
            return r;
        }
    }

  private:
    LineSocket sock_;
};

// The far end of -netdev dgram: raw Ethernet frames in UDP datagrams on loopback.
class FramePeer {
  public:
    FramePeer() {
        fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) throw std::runtime_error("bind failed");
        socklen_t len = sizeof a;
        getsockname(fd_, reinterpret_cast<sockaddr *>(&a), &len);
        port_ = ntohs(a.sin_port);
        qemu_port_ = free_udp_port();
    }
    ~FramePeer() { ::close(fd_); }
    // the -netdev argument connecting QEMU to this peer
    std::string netdev(const std::string &id) const {
        return "dgram,id=" + id + ",local.type=inet,local.host=127.0.0.1,local.port=" + std::to_string(qemu_port_) +
               ",remote.type=inet,remote.host=127.0.0.1,remote.port=" + std::to_string(port_);
    }
    void send(const std::vector<uint8_t> &frame) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(qemu_port_);
        sendto(fd_, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr *>(&a), sizeof a);
    }
    // next frame satisfying pred within timeout, or empty
    template <class Pred>
    std::vector<uint8_t> receive(Pred pred, std::chrono::milliseconds timeout) {
        auto deadline = clock::now() + timeout;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
            if (left <= 0) return {};
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, int(left)) <= 0) continue;
            std::vector<uint8_t> buf(65536);
            ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
            if (n <= 0) continue;
            buf.resize(size_t(n));
            if (pred(buf)) return buf;
        }
    }

  private:
    static uint16_t free_udp_port() {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(s, reinterpret_cast<sockaddr *>(&a), sizeof a);
        socklen_t len = sizeof a;
        getsockname(s, reinterpret_cast<sockaddr *>(&a), &len);
        ::close(s);
        return ntohs(a.sin_port);
    }
    int fd_ = -1;
    uint16_t port_ = 0, qemu_port_ = 0;
};

// ARP request "who has target_ip? tell sender_ip" from sender_mac, broadcast.
inline std::vector<uint8_t> arp_request(const uint8_t sender_mac[6], uint32_t sender_ip, uint32_t target_ip) {
    std::vector<uint8_t> f(42, 0);
    memset(f.data(), 0xff, 6);
    memcpy(f.data() + 6, sender_mac, 6);
    f[12] = 0x08, f[13] = 0x06;              // ARP
    f[14] = 0, f[15] = 1, f[16] = 8, f[17] = 0;  // Ethernet, IPv4
    f[18] = 6, f[19] = 4, f[20] = 0, f[21] = 1;  // sizes, request
    memcpy(f.data() + 22, sender_mac, 6);
    uint32_t s = htonl(sender_ip), t = htonl(target_ip);
    memcpy(f.data() + 28, &s, 4);
    memcpy(f.data() + 38, &t, 4);
    return f;
}

// Is this frame an ARP reply addressed to mac?
inline bool is_arp_reply_to(const std::vector<uint8_t> &f, const uint8_t mac[6]) {
    return f.size() >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && memcmp(f.data(), mac, 6) == 0;
}

inline std::string hex(const std::vector<uint8_t> &bytes) {
    static const char *digits = "0123456789abcdef";
    std::string s;
    for (uint8_t b : bytes) s += digits[b >> 4], s += digits[b & 15];
    return s;
}

// A QEMU process with stdout/stderr captured in files.
class QemuProcess {
  public:
    explicit QemuProcess(std::string dir) : dir_(std::move(dir)) {}
    QemuProcess(const QemuProcess &) = delete;
    ~QemuProcess() { kill(); }

    static std::vector<std::string> firmware_args() {
        return {"-L", "/usr/share/seabios", "-L", "/usr/lib/ipxe/qemu", "-L", "/usr/share/qemu"};
    }

    void start(const std::vector<std::string> &args) {
        std::vector<std::string> argv = {env("PLOVER_QEMU")};
        argv.insert(argv.end(), args.begin(), args.end());
        command_line_.clear();
        for (auto &a : argv) command_line_ += a + " ";
        pid_ = fork();
        if (pid_ == 0) {
            int out = open((dir_ + "/qemu.stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            int err = open((dir_ + "/qemu.stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            int nul = open("/dev/null", O_RDONLY);
            dup2(nul, 0), dup2(out, 1), dup2(err, 2);
            setpgid(0, 0);
            std::vector<char *> c;
            for (auto &a : argv) c.push_back(const_cast<char *>(a.c_str()));
            c.push_back(nullptr);
            execv(c[0], c.data());
            _exit(127);
        }
    }
    // exit status (or -signal), or INT32_MIN on timeout
    int wait(std::chrono::milliseconds timeout) {
        auto deadline = clock::now() + timeout;
        while (pid_ > 0) {
            int st = 0;
            pid_t r = waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                pid_ = -1;
                return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
            }
            if (clock::now() > deadline) return INT32_MIN;
            std::this_thread::sleep_for(20ms);
        }
        return INT32_MIN;
    }
    // send a signal to QEMU (not its process group)
    void signal(int sig) {
        if (pid_ > 0) ::kill(pid_, sig);
    }
    bool running() {
        if (pid_ <= 0) return false;
        int st;
        return waitpid(pid_, &st, WNOHANG) == 0;
    }
    void kill() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }
    std::string stderr_text() const { return read_file(dir_ + "/qemu.stderr"); }
    std::string stdout_text() const { return read_file(dir_ + "/qemu.stdout"); }
    const std::string &command_line() const { return command_line_; }

    // wait until the serial output (a file) contains needle
    bool wait_for_output(const std::string &file, const std::string &needle, std::chrono::milliseconds timeout) {
        auto deadline = clock::now() + timeout;
        while (clock::now() < deadline) {
            if (read_file(file).find(needle) != std::string::npos) return true;
            if (!running()) return false;
            std::this_thread::sleep_for(100ms);
        }
        return false;
    }

  private:
    std::string dir_;
    std::string command_line_;
    pid_t pid_ = -1;
};

}  // namespace harness
