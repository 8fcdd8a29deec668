// Test helpers for the library's admin socket: a client that pumps the fake host's main thread while it waits
// for a reply, and minimal readers for the flat JSON replies.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fake_host.h"

namespace admin {

// ---- minimal readers for the flat replies (the n-th occurrence of "key":) ----
inline size_t ValueAt(const std::string &json, const std::string &key, int nth) {
    size_t at = 0;
    std::string needle = "\"" + key + "\":";
    for (int i = 0; i <= nth; i++) {
        at = json.find(needle, i == 0 ? 0 : at + 1);
        if (at == std::string::npos) return at;
    }
    return at + needle.size();
}
inline int64_t Num(const std::string &json, const std::string &key, int nth = 0) {
    size_t at = ValueAt(json, key, nth);
    if (at == std::string::npos) { ADD_FAILURE() << "no " << key << " in " << json; return -999999; }
    return strtoll(json.c_str() + at, nullptr, 10);
}
inline std::string Str(const std::string &json, const std::string &key, int nth = 0) {
    size_t at = ValueAt(json, key, nth);
    if (at == std::string::npos || json[at] != '"') { ADD_FAILURE() << "no string " << key << " in " << json; return ""; }
    return json.substr(at + 1, json.find('"', at + 1) - at - 1);
}
inline bool Bool(const std::string &json, const std::string &key) {
    size_t at = ValueAt(json, key, 0);
    if (at == std::string::npos) { ADD_FAILURE() << "no " << key << " in " << json; return false; }
    return json.compare(at, 4, "true") == 0;
}
inline std::vector<int64_t> Nums(const std::string &json, const std::string &key, int nth = 0) {
    std::vector<int64_t> out;
    size_t at = ValueAt(json, key, nth);
    if (at == std::string::npos || json[at] != '[') { ADD_FAILURE() << "no array " << key << " in " << json; return out; }
    const char *p = json.c_str() + at + 1;
    while (*p != ']') {
        char *end;
        out.push_back(strtoll(p, &end, 10));
        p = *end == ',' ? end + 1 : end;
    }
    return out;
}
inline std::vector<std::string> Strs(const std::string &json, const std::string &key) {
    std::vector<std::string> out;
    size_t at = ValueAt(json, key, 0);
    if (at == std::string::npos || json[at] != '[') { ADD_FAILURE() << "no array " << key << " in " << json; return out; }
    for (size_t p = at + 1; json[p] != ']';) {
        size_t end = json.find('"', p + 1);
        out.push_back(json.substr(p + 1, end - p - 1));
        p = json[end + 1] == ',' ? end + 2 : end + 1;
    }
    return out;
}
inline bool Ok(const std::string &reply) { return reply.rfind("{\"ok\":true", 0) == 0; }
inline std::string Error(const std::string &reply) {
    return reply.rfind("{\"ok\":false", 0) == 0 ? Str(reply, "error") : "(not an error: " + reply + ")";
}

inline std::string Hex(const std::vector<uint8_t> &bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (uint8_t b : bytes) { s += digits[b >> 4]; s += digits[b & 15]; }
    return s;
}

// A client of the admin socket that pumps the fake main thread while it waits.
class AdminClient {
public:
    explicit AdminClient(const std::string &path) {
        fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
        connected_ = connect(fd_, (sockaddr *)&addr, sizeof addr) == 0;
    }
    ~AdminClient() { close(fd_); }
    bool connected() const { return connected_; }

    void Send(const std::string &bytes) {
        for (size_t at = 0; at < bytes.size();) {
            ssize_t n = write(fd_, bytes.data() + at, bytes.size() - at);
            if (n <= 0) return;  // the server closed the connection; ReadLine reports it
            at += size_t(n);
        }
    }

    // The next reply line, "" when the connection closed or after the timeout.
    std::string ReadLine(int timeout_ms = 10000) {
        for (int waited = 0; waited < timeout_ms;) {
            size_t nl = buf_.find('\n');
            if (nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return line;
            }
            FakeHost::Get().Pump();
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 1) == 1) {
                char chunk[65536];
                ssize_t n = read(fd_, chunk, sizeof chunk);
                if (n <= 0) return "";
                buf_.append(chunk, size_t(n));
            } else {
                waited++;
            }
        }
        return "";
    }

    std::string Request(const std::string &line) {
        Send(line + "\n");
        return ReadLine();
    }

private:
    int fd_ = -1;
    bool connected_ = false;
    std::string buf_;
};

}  // namespace admin
