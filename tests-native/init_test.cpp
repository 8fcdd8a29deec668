// plover_qemu_init against the fake host: what it accepts, what it refuses (each refusal with its message, which
// QEMU prints before refusing to start), and that it can be called again in the same process.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "fake_host.h"
#include "test_keys.h"

namespace {

class InitTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(Lib().error.empty()) << Lib().error;
        host().Reset("primary", cluster.config, "1");
    }
    void TearDown() override {
        host().Shutdown();
        host().Pump();
        EXPECT_EQ(0, host().off_main_calls.load()) << host().off_main_names;
    }
    static FakeHost &host() { return FakeHost::Get(); }

    // Init must fail with -expected_errno and a message containing each of the given texts.
    void ExpectRefused(int expected_errno, std::initializer_list<std::string> texts) {
        std::string err;
        int rc = host().Init(&err);
        EXPECT_EQ(-expected_errno, rc) << err;
        for (auto &t : texts) EXPECT_NE(std::string::npos, err.find(t)) << "message: " << err << "\nwanted: " << t;
        EXPECT_EQ(nullptr, (void *)host().hooks.shutdown) << "a refused init must not fill hooks";
    }

    TempCluster cluster;
};

TEST_F(InitTest, SucceedsWithAGoodConfigAndFillsHooks) {
    std::string err = "untouched";
    ASSERT_EQ(0, host().Init(&err)) << err;
    EXPECT_EQ("", err);
    const PloverHooks &h = host().hooks;
    EXPECT_EQ(sizeof(PloverHooks), h.struct_size);
    EXPECT_EQ(PLOVER_ABI_MAJOR, h.abi_major);
    EXPECT_EQ(PLOVER_ABI_MINOR, h.abi_minor);
    EXPECT_NE(nullptr, h.ctx);
    EXPECT_NE(nullptr, (void *)h.machine_ready);
    EXPECT_NE(nullptr, (void *)h.vm_state_changed);
    EXPECT_NE(nullptr, (void *)h.net_to_guest);
    EXPECT_NE(nullptr, (void *)h.net_from_guest);
    EXPECT_NE(nullptr, (void *)h.shutdown);
    EXPECT_TRUE(host().LogContains("node 1 (primary) of cluster 'nt'")) << host().LogText();
}

TEST_F(InitTest, CreatesTheAdminSocketWithMode0600) {
    ASSERT_EQ(0, host().Init());
    struct stat st{};
    ASSERT_EQ(0, lstat(cluster.admin.c_str(), &st)) << cluster.admin;
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(0600u, st.st_mode & 0777);
    host().Shutdown();
    EXPECT_NE(0, access(cluster.admin.c_str(), F_OK)) << "shutdown removes the socket file";
}

TEST_F(InitTest, BackupNodeStarts) {
    host().Reset("backup", cluster.config, "2");
    std::string err;
    EXPECT_EQ(0, host().Init(&err)) << err;
}

TEST_F(InitTest, WithoutAnAdminEntryNoSocketIsCreated) {
    std::string config = cluster.Write("noadmin.json", TempCluster::Json("cluster.key", ""));
    host().Reset("primary", config, "1");
    ASSERT_EQ(0, host().Init());
    EXPECT_NE(0, access(cluster.admin.c_str(), F_OK));
}

TEST_F(InitTest, RefusesAbiMajorMismatch) {
    host().api.abi_major = PLOVER_ABI_MAJOR + 1;
    ExpectRefused(EPROTO, {"ABI major mismatch", "QEMU offers 2." + std::to_string(PLOVER_ABI_MINOR), "needs 1.x"});
}

TEST_F(InitTest, RefusesTooSmallStructSize) {
    host().api.struct_size = offsetof(PloverHostApi, vcpu_thread_ids);
    ExpectRefused(EINVAL, {"struct_size " + std::to_string(offsetof(PloverHostApi, vcpu_thread_ids)),
                           std::to_string(sizeof(PloverHostApi)) + " bytes"});
}

TEST_F(InitTest, AcceptsALargerStructFromANewerMinor) {
    host().api.struct_size = sizeof(PloverHostApi) + 64;  // fields appended by a newer 1.x host
    host().api.abi_minor = PLOVER_ABI_MINOR + 1;
    std::string err;
    EXPECT_EQ(0, host().Init(&err)) << err;
}

TEST_F(InitTest, RefusesUnknownRole) {
    host().Reset("leader", cluster.config, "1");
    ExpectRefused(EINVAL, {"role='leader' is unknown"});
}

TEST_F(InitTest, RefusesMissingRole) {
    host().Reset("", cluster.config, "1");
    ExpectRefused(EINVAL, {"role= is missing"});
}

TEST_F(InitTest, RefusesWitnessRole) {
    host().Reset("witness", cluster.config, "3");
    ExpectRefused(EINVAL, {"role=witness is refused", "runs no VM"});
}

TEST_F(InitTest, RefusesMissingConfigFile) {
    std::string path = cluster.dir + "/absent.json";
    host().Reset("primary", path, "1");
    ExpectRefused(ENOENT, {path, "config file not found"});
}

TEST_F(InitTest, RefusesMissingConfigArgument) {
    host().Reset("primary", "", "1");
    ExpectRefused(EINVAL, {"config= is missing"});
}

TEST_F(InitTest, RefusesInvalidConfig) {
    std::string json = TempCluster::Json("cluster.key", "");
    json.replace(json.find("\"backup\""), 8, "\"spare\"");
    host().Reset("primary", cluster.Write("bad.json", json), "1");
    ExpectRefused(EINVAL, {"bad config", "bad.json", "nodes[1].role: unknown role 'spare'"});
}

TEST_F(InitTest, RefusesMalformedConfig) {
    host().Reset("primary", cluster.Write("broken.json", "{\n  \"cluster\": \"x\",\n  oops\n}"), "1");
    ExpectRefused(EINVAL, {"broken.json", "malformed JSON at line 3"});
}

TEST_F(InitTest, RefusesNodeNotInConfig) {
    host().Reset("primary", cluster.config, "7");
    ExpectRefused(EINVAL, {"node=7 is not in", "ids: 1, 2, 3"});
}

TEST_F(InitTest, RefusesNonDecimalNode) {
    host().Reset("primary", cluster.config, "one");
    ExpectRefused(EINVAL, {"node='one' is not a positive decimal node id"});
    host().Reset("primary", cluster.config, "");
    ExpectRefused(EINVAL, {"node= is missing"});
}

TEST_F(InitTest, RefusesRoleThatContradictsTheConfig) {
    host().Reset("backup", cluster.config, "1");
    ExpectRefused(EINVAL, {"role=backup but node 1 is the primary"});
}

TEST_F(InitTest, RefusesShortKey) {
    std::string key = cluster.Write("node1.key", std::string(16, 'k'));
    chmod(key.c_str(), 0600);
    ExpectRefused(EINVAL, {"nodes[0].keyFile", key, "holds 16 bytes", "holds 96"});
}

TEST_F(InitTest, RefusesAKeyOthersCanRead) {
    std::string key = cluster.dir + "/node1.key";
    chmod(key.c_str(), 0644);
    ExpectRefused(EINVAL, {"nodes[0].keyFile", key, "mode 0644"});
}

TEST_F(InitTest, RefusesAnotherNodesKey) {
    plover_test::WriteNodeKey(cluster.dir + "/node1.key", 2);
    ExpectRefused(EINVAL, {"nodes[0].keyFile", "is not node 1's key"});
}

TEST_F(InitTest, RefusesNullPointers) {
    char err[128];
    EXPECT_EQ(-EINVAL, Lib().init(nullptr, &host().hooks, err, sizeof err));
    EXPECT_STREQ("host API pointer is NULL", err);
    EXPECT_EQ(-EINVAL, Lib().init(&host().api, nullptr, err, sizeof err));
    EXPECT_STREQ("hooks pointer is NULL", err);
    EXPECT_EQ(-EINVAL, Lib().init(nullptr, nullptr, nullptr, 0)) << "no err buffer is fine too";
}

TEST_F(InitTest, TruncatesTheMessageToErrlen) {
    host().Reset("witness", cluster.config, "3");
    std::string err;
    EXPECT_EQ(-EINVAL, host().Init(&err, 12));  // Init checks that nothing is written past errlen
    EXPECT_EQ("role=witnes", err);
    EXPECT_EQ(-EINVAL, host().Init(&err, 1));
    EXPECT_EQ("", err);
}

TEST_F(InitTest, ReplacesAStaleSocketFile) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", cluster.admin.c_str());
    ASSERT_EQ(0, bind(fd, (sockaddr *)&addr, sizeof addr));
    close(fd);  // a dead process's socket: the file stays, nobody listens
    std::string err;
    EXPECT_EQ(0, host().Init(&err)) << err;
}

TEST_F(InitTest, RefusesToReplaceAFileThatIsNotASocket) {
    cluster.Write("n1.sock", "precious data");
    ExpectRefused(EEXIST, {cluster.admin, "not a socket"});
    std::ifstream in(cluster.admin);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ("precious data", text);
}

// One NativeAOT runtime per process: init must work again after shutdown, and instances are independent.
TEST_F(InitTest, InitAgainAfterShutdownInTheSameProcess) {
    for (int round = 0; round < 3; round++) {
        std::string err;
        ASSERT_EQ(0, host().Init(&err)) << "round " << round << ": " << err;
        host().MachineReady();
        host().Shutdown();
    }
}

TEST_F(InitTest, ASecondInstanceCannotTakeALiveAdminSocket) {
    ASSERT_EQ(0, host().Init());
    PloverHooks first = host().hooks;
    PloverHooks second{};
    char err[256];
    EXPECT_EQ(-98 /* EADDRINUSE */, Lib().init(&host().api, &second, err, sizeof err));
    EXPECT_NE(nullptr, strstr(err, "another process is serving it")) << err;
    // A config without the admin socket gives an independent second instance.
    std::string config = cluster.Write("noadmin.json", TempCluster::Json("cluster.key", ""));
    PloverHostApi api = host().api;
    api.config = config.c_str();
    ASSERT_EQ(0, Lib().init(&api, &second, err, sizeof err)) << err;
    EXPECT_NE(first.ctx, second.ctx);
    second.shutdown(second.ctx);
    EXPECT_EQ(0, access(cluster.admin.c_str(), F_OK)) << "the first instance still serves";
}

// A listening socket on 127.0.0.1 at a free port (its port in *port); the caller closes it.
int ListenLoopback(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1) != 0) return -1;
    socklen_t len = sizeof addr;
    getsockname(fd, (sockaddr *)&addr, &len);
    *port = ntohs(addr.sin_port);
    return fd;
}

// GET path from 127.0.0.1:port; the whole answer, or "" when nobody listens.
std::string HttpGet(int port, const std::string &path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string answer;
    if (connect(fd, (sockaddr *)&addr, sizeof addr) == 0) {
        std::string request = "GET " + path + " HTTP/1.1\r\nHost: prometheus.example:9400\r\n\r\n";
        if (send(fd, request.data(), request.size(), 0) == (ssize_t)request.size()) {
            char buf[4096];
            ssize_t n;
            while ((n = recv(fd, buf, sizeof buf, 0)) > 0) answer.append(buf, n);
        }
    }
    close(fd);
    return answer;
}

// The replicate-mode config of TempCluster with node 1's metrics at 127.0.0.1:port.
std::string MetricsConfig(const TempCluster &cluster, int port) {
    std::string json = TempCluster::Json("cluster.key", "", "replicate");
    const std::string at = "\"127.0.0.1:7401\"";
    json.replace(json.find(at), at.size(), at + ", \"metrics\": \"127.0.0.1:" + std::to_string(port) + "\"");
    return cluster.Write("metrics.json", json);
}

// The Prometheus endpoint is served from init (before machine_ready the node is "starting") and gone at shutdown.
TEST_F(InitTest, ServesPrometheusMetricsFromInitWhenConfigured) {
    int port = 0;
    close(ListenLoopback(&port));
    host().Reset("primary", MetricsConfig(cluster, port), "1");
    std::string err;
    ASSERT_EQ(0, host().Init(&err)) << err;
    std::string reply = HttpGet(port, "/metrics");
    EXPECT_EQ(0u, reply.find("HTTP/1.1 200 OK\r\n")) << reply;
    EXPECT_NE(std::string::npos, reply.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n")) << reply;
    EXPECT_NE(std::string::npos, reply.find("\nplover_role{role=\"starting\"} 1\n")) << reply;
    EXPECT_NE(std::string::npos, reply.find("\nplover_node_info{cluster=\"nt\",node=\"1\",config_role=\"primary\"} 1\n")) << reply;
    EXPECT_NE(std::string::npos, reply.find("\n# TYPE plover_sync_guest_pause_seconds histogram\n")) << reply;
    EXPECT_EQ(0u, HttpGet(port, "/").find("HTTP/1.1 404 Not Found\r\n"));
    EXPECT_TRUE(host().LogContains("metrics at http://127.0.0.1:" + std::to_string(port) + "/metrics")) << host().LogText();
    host().Shutdown();
    EXPECT_EQ("", HttpGet(port, "/metrics")) << "served after shutdown";
}

TEST_F(InitTest, RefusesAMetricsAddressThatIsTaken) {
    int port = 0;
    int squatter = ListenLoopback(&port);
    ASSERT_GE(squatter, 0);
    host().Reset("primary", MetricsConfig(cluster, port), "1");
    ExpectRefused(98 /* EADDRINUSE */, {"nodes[0].metrics: cannot serve metrics on 127.0.0.1:" + std::to_string(port)});
    close(squatter);
}

}  // namespace
