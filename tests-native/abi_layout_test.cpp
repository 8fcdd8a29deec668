// The C# mirror of plover_abi.h (generated from it at build time by interop/Plover.AbiGen into interop/obj/abigen/)
// must lay out every struct exactly as the C compiler does: for every struct and every field, sizeof/offsetof here
// equals plover_abi_layout(type, field) from the library (which measures the C# structs on real instances).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "fake_host.h"

namespace {

struct Field {
    const char *name;
    size_t offset;
};
struct Type {
    const char *name;
    size_t size;
    std::vector<Field> fields;
};

#define F(T, f) Field{#f, offsetof(T, f)}

const std::vector<Type> &Types() {
    static const std::vector<Type> types = {
        {"struct iovec", sizeof(struct iovec), {F(struct iovec, iov_base), F(struct iovec, iov_len)}},
        {"PloverRamBlock", sizeof(PloverRamBlock),
         {F(PloverRamBlock, id), F(PloverRamBlock, flags), F(PloverRamBlock, name), F(PloverRamBlock, host),
          F(PloverRamBlock, ram_addr), F(PloverRamBlock, length), F(PloverRamBlock, host_page_size),
          F(PloverRamBlock, dirty)}},
        {"PloverNic", sizeof(PloverNic),
         {F(PloverNic, id), F(PloverNic, vnet_hdr_len), F(PloverNic, filter_id), F(PloverNic, netdev_id),
          F(PloverNic, nic_name), F(PloverNic, mac), F(PloverNic, pad)}},
        {"PloverDrive", sizeof(PloverDrive),
         {F(PloverDrive, id), F(PloverDrive, flags), F(PloverDrive, name), F(PloverDrive, device),
          F(PloverDrive, size), F(PloverDrive, granularity), F(PloverDrive, blocks)}},
        {"PloverHostApi", sizeof(PloverHostApi),
         {F(PloverHostApi, struct_size), F(PloverHostApi, abi_major), F(PloverHostApi, abi_minor),
          F(PloverHostApi, qemu_version), F(PloverHostApi, object_id), F(PloverHostApi, role),
          F(PloverHostApi, config), F(PloverHostApi, node), F(PloverHostApi, target_page_size),
          F(PloverHostApi, reserved0), F(PloverHostApi, log), F(PloverHostApi, schedule_main),
          F(PloverHostApi, fence), F(PloverHostApi, accel_name), F(PloverHostApi, vm_is_running),
          F(PloverHostApi, vm_stop), F(PloverHostApi, vm_start), F(PloverHostApi, ram_blocks),
          F(PloverHostApi, dirty_log_start), F(PloverHostApi, dirty_log_stop), F(PloverHostApi, dirty_sync),
          F(PloverHostApi, dirty_clear), F(PloverHostApi, dirty_mark_all), F(PloverHostApi, ram_updated),
          F(PloverHostApi, save_device_state), F(PloverHostApi, load_device_state), F(PloverHostApi, free_buf),
          F(PloverHostApi, nics), F(PloverHostApi, net_inject), F(PloverHostApi, net_out_cut),
          F(PloverHostApi, net_out_release), F(PloverHostApi, net_out_discard), F(PloverHostApi, net_out_mode),
          F(PloverHostApi, net_announce), F(PloverHostApi, vcpu_thread_ids),
          F(PloverHostApi, save_device_sections), F(PloverHostApi, event), F(PloverHostApi, drives),
          F(PloverHostApi, drive_dirty_take), F(PloverHostApi, drive_read), F(PloverHostApi, drive_write),
          F(PloverHostApi, drive_file)}},
        {"PloverHooks", sizeof(PloverHooks),
         {F(PloverHooks, struct_size), F(PloverHooks, abi_major), F(PloverHooks, abi_minor), F(PloverHooks, ctx),
          F(PloverHooks, machine_ready), F(PloverHooks, vm_state_changed), F(PloverHooks, net_to_guest),
          F(PloverHooks, net_from_guest), F(PloverHooks, shutdown), F(PloverHooks, query),
          F(PloverHooks, operator_command)}},
        {"PloverInfo", sizeof(PloverInfo),
         {F(PloverInfo, struct_size), F(PloverInfo, role), F(PloverInfo, mode), F(PloverInfo, node),
          F(PloverInfo, backup), F(PloverInfo, leader), F(PloverInfo, is_protected), F(PloverInfo, fenced),
          F(PloverInfo, sync_link), F(PloverInfo, reserved0), F(PloverInfo, term), F(PloverInfo, commit_index),
          F(PloverInfo, last_sync_epoch), F(PloverInfo, last_sync_unix_us), F(PloverInfo, last_sync_union_pages),
          F(PloverInfo, last_sync_identical_pages), F(PloverInfo, last_sync_divergent_pages),
          F(PloverInfo, last_sync_wire_bytes), F(PloverInfo, last_sync_device_state_bytes),
          F(PloverInfo, last_sync_guest_pause_us), F(PloverInfo, last_sync_total_us),
          F(PloverInfo, syncs_completed), F(PloverInfo, syncs_aborted), F(PloverInfo, inputs_injected),
          F(PloverInfo, frames_released), F(PloverInfo, frames_discarded), F(PloverInfo, promotions),
          F(PloverInfo, demotions), F(PloverInfo, joins), F(PloverInfo, last_sync_disk_dirty_blocks),
          F(PloverInfo, last_sync_disk_union_blocks), F(PloverInfo, last_sync_disk_identical_blocks),
          F(PloverInfo, last_sync_disk_divergent_blocks), F(PloverInfo, last_sync_disk_wire_bytes),
          F(PloverInfo, disk_torn), F(PloverInfo, reserved1), F(PloverInfo, problem)}},
        {"PloverEvent", sizeof(PloverEvent),
         {F(PloverEvent, struct_size), F(PloverEvent, kind), F(PloverEvent, role), F(PloverEvent, previous_role),
          F(PloverEvent, term), F(PloverEvent, backup), F(PloverEvent, reserved0), F(PloverEvent, reason)}},
    };
    return types;
}

#undef F

// The last field of each struct ends where the struct does (less tail padding): a field appended to the C
// header but missing from this list would leave a gap that this check reports.
size_t EndOfLastField(const Type &t) {
    size_t last = 0;
    for (auto &f : t.fields) last = std::max(last, f.offset);
    return last;
}

class AbiLayout : public ::testing::TestWithParam<size_t> {};

TEST_P(AbiLayout, SizeAndEveryFieldOffsetMatchTheCSharpMirror) {
    if (!RequireLib()) return;
    const Type &t = Types()[GetParam()];
    EXPECT_EQ(int64_t(t.size), Lib().abi_layout(t.name, nullptr)) << "sizeof(" << t.name << ")";
    for (auto &f : t.fields)
        EXPECT_EQ(int64_t(f.offset), Lib().abi_layout(t.name, f.name)) << "offsetof(" << t.name << ", " << f.name << ")";
    EXPECT_LT(t.size - EndOfLastField(t), size_t(16)) << t.name << ": fields missing from this test's list?";
}

std::string TypeName(const ::testing::TestParamInfo<size_t> &info) {
    std::string n = Types()[info.param].name;
    for (auto &c : n)
        if (c == ' ') c = '_';
    return n;
}

INSTANTIATE_TEST_SUITE_P(Structs, AbiLayout, ::testing::Range(size_t(0), Types().size()), TypeName);

// Field names of every `typedef struct NAME { ... } NAME;` in the header text (comments removed; handles
// "uint16_t a, b;", pointers, arrays and function pointers).
std::map<std::string, std::set<std::string>> HeaderFields(std::string text) {
    text = std::regex_replace(text, std::regex(R"(/\*[\s\S]*?\*/)"), " ");
    text = std::regex_replace(text, std::regex(R"(//[^\n]*)"), " ");
    std::map<std::string, std::set<std::string>> structs;
    std::regex def(R"(typedef\s+struct\s+(\w+)\s*\{([^}]*)\})");
    for (std::sregex_iterator it(text.begin(), text.end(), def), end; it != end; ++it) {
        auto &fields = structs[(*it)[1]];
        std::stringstream body((*it)[2].str());
        std::string decl;
        while (std::getline(body, decl, ';')) {
            std::smatch m;
            if (std::regex_search(decl, m, std::regex(R"(\(\s*\*\s*(\w+)\s*\))"))) {  // function pointer
                fields.insert(m[1]);
                continue;
            }
            decl = std::regex_replace(decl, std::regex(R"(\[[^\]]*\])"), "");
            std::stringstream parts(decl);
            std::string part;
            while (std::getline(parts, part, ','))
                if (std::regex_search(part, m, std::regex(R"((\w+)\s*$)"))) fields.insert(m[1]);
        }
    }
    return structs;
}

// The list above must name every struct and field the header declares, so a field added to plover_abi.h
// without a C# mirror and a layout check fails here.
TEST(AbiLayoutHeader, TheCheckedListCoversEveryStructAndFieldOfTheHeader) {
    std::ifstream in(PLOVER_ABI_HEADER);
    ASSERT_TRUE(in) << "cannot read " << PLOVER_ABI_HEADER;
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto header = HeaderFields(text);
    ASSERT_GE(header.size(), 4u) << "the header parser found too few structs";
    for (auto &[name, fields] : header) {
        auto t = std::find_if(Types().begin(), Types().end(), [&](const Type &x) { return x.name == name; });
        ASSERT_NE(Types().end(), t) << "struct " << name << " of plover_abi.h is not checked";
        std::set<std::string> checked;
        for (auto &f : t->fields) checked.insert(f.name);
        EXPECT_EQ(fields, checked) << "fields of " << name;
    }
}

TEST(AbiLayoutQuery, UnknownNamesAreMinusOne) {
    if (!RequireLib()) return;
    EXPECT_EQ(-1, Lib().abi_layout("PloverNoSuchStruct", nullptr));
    EXPECT_EQ(-1, Lib().abi_layout("PloverHooks", "no_such_field"));
    EXPECT_EQ(-1, Lib().abi_layout(nullptr, nullptr));
}

TEST(AbiLayoutQuery, FunctionPointerFieldsArePointerSized) {
    if (!RequireLib()) return;
    EXPECT_EQ(int64_t(sizeof(void *)),
              Lib().abi_layout("PloverHostApi", "schedule_main") - Lib().abi_layout("PloverHostApi", "log"));
}

TEST(AbiVersion, ExportEqualsTheHeader) {
    if (!RequireLib()) return;
    EXPECT_EQ(PLOVER_ABI_VERSION, Lib().abi_version());
    EXPECT_EQ(uint32_t(PLOVER_ABI_MAJOR), Lib().abi_version() >> 16);
}

}  // namespace
