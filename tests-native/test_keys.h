// Fixed identity key pairs of test clusters' nodes 1, 2 and 3 (made once with `plover keygen`'s format: D | X | Y,
// 96 bytes; the public key is base64 of X | Y). Test keys only: never use them anywhere else.
#pragma once
#include <string>
#include <sys/stat.h>
#include <fstream>

namespace plover_test {

inline const char *const kNodeKeyHex[3] = {
    "f799a8d70e5fe5e04bf7c457a2a13d1a3aa07ed41a48d9526e443fcc12f27b769191addf3a4b59051cf042e012cf27f45cba5e43d70e689e0f3e98daa4236b51a0067fbb27d389e5087bdc0f1b55b861a5c0b2063e693dcad39f839a2eedd852",
    "b597a35c837af34e6ce0fad0eeb2ad464de1ebf81946a42a6a3ae1de6b2aeaca958db5ba699dd53b08a6ca639d6e5b3f9de6e3a22b623976fb2ace6713a179ca3495786f2183a284ef5a66c3190d2470c87c58e98e2fc8e2fe6d90376215416b",
    "9e4c3fde2f683777878bea248a6afef8b7ca7fd031e9fa96186127c0694a834bd140f4376f40058536cec9f63fee8ca735766acb1428505382431909cb689e983a545af005b43a2284de4798cf425dc5f983215438e70e92fd8981a9112c805f",
};
inline const char *const kNodePublicKey[3] = {
    "kZGt3zpLWQUc8ELgEs8n9Fy6XkPXDmieDz6Y2qQja1GgBn+7J9OJ5Qh73A8bVbhhpcCyBj5pPcrTn4OaLu3YUg==",
    "lY21ummd1TsIpspjnW5bP53m46IrYjl2+yrOZxOheco0lXhvIYOihO9aZsMZDSRwyHxY6Y4vyOL+bZA3YhVBaw==",
    "0UD0N29ABYU2zsn2P+6MpzV2assUKFBTgkMZCctonpg6VFrwBbQ6IoTeR5jPQl3F+YMhVDjnDpL9iYGpESyAXw==",
};

// Writes node id's private key file to path, mode 0600 (the library refuses a key others can read).
inline void WriteNodeKey(const std::string &path, int id) {
    std::string hex = kNodeKeyHex[id - 1], bytes;
    for (size_t i = 0; i < hex.size(); i += 2) bytes += char(std::stoi(hex.substr(i, 2), nullptr, 16));
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    chmod(path.c_str(), 0600);
}

// The identity fields of node id's config entry: its public key and its own key file nodeN.key.
inline std::string NodeIdentityJson(int id) {
    return std::string(R"("publicKey": ")") + kNodePublicKey[id - 1] + R"(", "keyFile": "node)" + std::to_string(id) + R"(.key")";
}

}  // namespace plover_test
