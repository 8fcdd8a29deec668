/*
 * plover_abi.h - the only contract between QEMU (the host) and libplover.so (the library).
 *
 * C99, blittable, no bool, no data exports. The C# mirror is generated from this file at build time by
 * interop/Plover.AbiGen (into interop/obj/abigen/); the native test `abi_layout_test` checks every struct
 * size and field offset of both sides against it.
 * The QEMU patch series installs this exact file as include/system/plover-abi.h (build.sh copies it).
 *
 * Threads: every hook runs on QEMU's main thread with the big QEMU lock (BQL) held and must return
 * quickly (< ~100 us), never block and never throw. Host calls marked ANY may be made from any thread;
 * all others only from inside a hook or a PloverMainFn scheduled with schedule_main().
 */
#ifndef PLOVER_ABI_H
#define PLOVER_ABI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define PLOVER_ABI_MAJOR 1 /* incompatible change: the host refuses a library with another major */
#define PLOVER_ABI_MINOR 4 /* compatible change: fields appended at struct ends; check struct_size */
#define PLOVER_ABI_VERSION ((uint32_t)((PLOVER_ABI_MAJOR << 16) | PLOVER_ABI_MINOR))

/* Library exports (functions only):
 *   uint32_t plover_qemu_abi_version(void);          returns PLOVER_ABI_VERSION the library was built for
 *   int32_t  plover_qemu_init(const PloverHostApi *host, PloverHooks *hooks, char *err, size_t errlen);
 *            returns 0, or a negative errno with a NUL-terminated message in err
 * Helpers for tests, benchmarks and outside checkers (pages are 4096 bytes):
 *   uint64_t plover_cityhash64(const uint8_t *data, size_t len);
 *   int64_t  plover_hash_pages(const uint8_t *base, uint64_t page_count, const uint64_t *dirty_bitmap,
 *                              uint64_t *hashes_out, int32_t threads);
 *   int32_t  plover_hash_kernel(void);                 0 scalar, 1 AVX2, 2 AVX-512 (PLOVER_HASH_KERNEL may force)
 *   int64_t  plover_abi_layout(const char *type, const char *field);
 *            the C# mirror's sizeof(type) (field NULL) or offsetof(type, field); -1 if unknown
 */
#define PLOVER_SYM_ABI_VERSION "plover_qemu_abi_version"
#define PLOVER_SYM_INIT "plover_qemu_init"

enum { PLOVER_LOG_ERROR = 0, PLOVER_LOG_WARN = 1, PLOVER_LOG_INFO = 2, PLOVER_LOG_DEBUG = 3 };
enum { PLOVER_OUT_HOLD = 0, PLOVER_OUT_PASS = 1 };
enum { PLOVER_NET_PASS = 0, PLOVER_NET_CONSUMED = 1 };

/* ---- since 1.2: QMP (query-plover, the PLOVER_* events, operator commands) ---- */
enum { PLOVER_ROLE_STARTING = 0, PLOVER_ROLE_PRIMARY = 1, PLOVER_ROLE_BACKUP = 2, PLOVER_ROLE_JOINING = 3,
       PLOVER_ROLE_PROBE = 4 };
enum { PLOVER_MODE_REPLICATE = 0, PLOVER_MODE_CHECKPOINT = 1, PLOVER_MODE_PROBE = 2 };
enum { PLOVER_EVENT_ROLE_CHANGED = 0, PLOVER_EVENT_PROTECTION_LOST = 1, PLOVER_EVENT_PROTECTION_RESTORED = 2,
       PLOVER_EVENT_FENCED = 3 };
/* operator commands QEMU asks about before running them (QMP and HMP) */
enum { PLOVER_CMD_STOP = 0, PLOVER_CMD_CONT = 1, PLOVER_CMD_SYSTEM_RESET = 2, PLOVER_CMD_SYSTEM_POWERDOWN = 3 };
/* the answer: run it, or report success and do nothing (a negative errno refuses, with a message) */
enum { PLOVER_CMD_RUN = 0, PLOVER_CMD_IGNORE = 1 };

typedef struct PloverRamBlock {  /* host-owned; valid from machine_ready until shutdown */
    uint32_t id;                 /* index in the array */
    uint32_t flags;              /* reserved, 0 */
    const char *name;            /* RAMBlock idstr, e.g. "pc.ram"; identical on both replicas */
    uint8_t *host;               /* guest RAM, zero copy */
    uint64_t ram_addr;           /* RAMBlock offset in ram_addr_t space */
    uint64_t length;             /* used_length in bytes, a multiple of target_page_size */
    uint64_t host_page_size;     /* backing page size (4 KiB or huge) */
    uint64_t *dirty;             /* bit i of word i/64 = target page i; ceil(length/page/64) words */
} PloverRamBlock;

typedef struct PloverNic {
    uint32_t id;                 /* filter-plover creation order, 0-based */
    uint32_t vnet_hdr_len;       /* must match across replicas */
    const char *filter_id;       /* -object filter-plover,id=... */
    const char *netdev_id;
    const char *nic_name;        /* the guest NIC's name, or "" when none is attached */
    uint8_t mac[6];
    uint8_t pad[2];
} PloverNic;

/* since 1.3: a writable drive the operator listed in drives= of -object plover (host-owned; valid from
 * machine_ready until shutdown). The block layer marks the blocks the guest writes in a dirty bitmap of
 * `granularity` bytes per bit (a power of two); bit i of word i/64 is block i, the last block may be short. */
typedef struct PloverDrive {
    uint32_t id;                 /* index in the array, in drives= order */
    uint32_t flags;              /* reserved, 0 */
    const char *name;            /* as listed in drives=: a -drive id or a node name; the same on both replicas */
    const char *device;          /* the QOM path of the guest device it is attached to */
    uint64_t size;               /* bytes */
    uint64_t granularity;        /* bytes per dirty bit */
    uint64_t blocks;             /* ceil(size / granularity): bits in its dirty bitmap */
} PloverDrive;

typedef void (*PloverMainFn)(void *opaque);

typedef struct PloverInfo {      /* since 1.2: query-plover; the host zeroes it and sets struct_size */
    uint32_t struct_size;
    int32_t role;                /* PLOVER_ROLE_* */
    int32_t mode;                /* PLOVER_MODE_* */
    uint32_t node;               /* this node's id */
    uint32_t backup;             /* a primary's backup (node id); 0: none */
    uint32_t leader;             /* the consensus leader (node id); 0: none known */
    int32_t is_protected;        /* 1: a primary whose output waits for its synced backup */
    int32_t fenced;              /* 1: deposed, its output stopped, rejoining */
    int32_t sync_link;           /* 1: the sync connection to the other replica is up */
    uint32_t reserved0;
    char problem[256];           /* what keeps it from being protected, NUL-terminated UTF-8; "" if nothing */
    uint64_t term;
    uint64_t commit_index;
    /* the last completed sync; last_sync_epoch 0: none yet */
    uint64_t last_sync_epoch;
    int64_t last_sync_unix_us;   /* when it started, Unix microseconds */
    uint64_t last_sync_union_pages;
    uint64_t last_sync_identical_pages;
    uint64_t last_sync_divergent_pages;
    uint64_t last_sync_wire_bytes;
    uint64_t last_sync_device_state_bytes;
    uint64_t last_sync_guest_pause_us;
    uint64_t last_sync_total_us;
    /* counters since this QEMU started */
    uint64_t syncs_completed;
    uint64_t syncs_aborted;
    uint64_t inputs_injected;
    uint64_t frames_released;
    uint64_t frames_discarded;
    uint64_t promotions;
    uint64_t demotions;
    uint64_t joins;
    /* ---- since 1.4: replicated drives (the host shows them when it has drives) ---- */
    uint64_t last_sync_disk_dirty_blocks;      /* blocks this side's guest wrote in the epoch */
    uint64_t last_sync_disk_union_blocks;
    uint64_t last_sync_disk_identical_blocks;
    uint64_t last_sync_disk_divergent_blocks;
    uint64_t last_sync_disk_wire_bytes;        /* the sync's disk frames, both ways */
    int32_t disk_torn;           /* 1: this node's drive images are marked torn (a sync was writing them) */
    uint32_t reserved1;
} PloverInfo;

typedef struct PloverEvent {     /* since 1.2: one QMP event; valid only during the event call */
    uint32_t struct_size;
    int32_t kind;                /* PLOVER_EVENT_* */
    int32_t role;                /* the role now (PLOVER_ROLE_*) */
    int32_t previous_role;       /* ROLE_CHANGED: the role before */
    uint64_t term;
    uint32_t backup;             /* PROTECTION_RESTORED: the backup's node id */
    uint32_t reserved0;
    const char *reason;          /* NUL-terminated UTF-8, never NULL */
} PloverEvent;

typedef struct PloverHostApi {
    uint32_t struct_size;
    uint16_t abi_major, abi_minor;
    const char *qemu_version;
    const char *object_id;       /* -object plover,id=...  */
    const char *role;            /* role=primary|backup    */
    const char *config;          /* config=FILE            */
    const char *node;            /* node=ID (decimal)      */
    uint32_t target_page_size;
    uint32_t reserved0;

    /* ---- ANY thread ---- */
    void (*log)(int32_t level, const char *msg);
    int32_t (*schedule_main)(PloverMainFn fn, void *opaque); /* one-shot bottom half on the main loop */
    void (*fence)(const char *why);                          /* report and exit(1); never returns */

    /* ---- MAIN thread only ---- */
    const char *(*accel_name)(void);        /* "kvm", "tcg", "qtest"; valid from machine_ready */
    int32_t (*vm_is_running)(void);
    int32_t (*vm_stop)(void);               /* synchronous; 0 also when already stopped */
    int32_t (*vm_start)(void);
    int32_t (*ram_blocks)(const PloverRamBlock **blocks, uint32_t *count);
    int32_t (*dirty_log_start)(void);       /* starts logging and discards dirt so far */
    void (*dirty_log_stop)(void);
    int64_t (*dirty_sync)(void);            /* VM stopped: OR new dirt into blocks[].dirty; bits set */
    void (*dirty_clear)(void);
    void (*dirty_mark_all)(void);
    void (*ram_updated)(uint32_t block, uint64_t offset, uint64_t len); /* after the library wrote RAM */
    int32_t (*save_device_state)(uint8_t **buf, size_t *len);           /* free with free_buf */
    int32_t (*load_device_state)(const uint8_t *buf, size_t len);       /* VM stopped, after RAM */
    void (*free_buf)(void *buf);
    int32_t (*nics)(const PloverNic **nics, uint32_t *count);
    int32_t (*net_inject)(uint32_t nic, uint32_t flags, const uint8_t *pkt, size_t len); /* into guest */
    uint64_t (*net_out_cut)(uint32_t nic);  /* seal the open output epoch, return its number */
    int64_t (*net_out_release)(uint32_t nic, uint64_t upto_epoch); /* frames sent, or -errno */
    int64_t (*net_out_discard)(uint32_t nic, uint64_t upto_epoch); /* frames dropped, or -errno */
    int32_t (*net_out_mode)(uint32_t nic, int32_t mode);           /* PLOVER_OUT_HOLD or _PASS */
    int32_t (*net_announce)(void);          /* gratuitous ARP/RARP for every NIC */
    int32_t (*vcpu_thread_ids)(int32_t *tids, uint32_t max, uint32_t *count); /* for idle detection */
    /* ---- since 1.1 (check struct_size) ---- */
    /* save_device_state, and where each section starts: starts[count - 1] is the offset of the final EOF
     * byte; a section not saved (not needed) starts where the next one does. Free both with free_buf */
    int32_t (*save_device_sections)(uint8_t **buf, size_t *len, uint32_t **starts, uint32_t *count);
    /* ---- since 1.2 (check struct_size) ---- */
    void (*event)(const PloverEvent *event);  /* MAIN: emit the QMP event PLOVER_<kind> */
    /* ---- since 1.3 (check struct_size): replicated drives; MAIN thread only ---- */
    int32_t (*drives)(const PloverDrive **drives, uint32_t *count);     /* count 0: none replicated */
    /* VM stopped: drains block I/O, ORs the blocks written since the last take into bitmap (`words` u64 words,
     * at least ceil(blocks/64)) and clears them in QEMU; returns the number of blocks set, or -errno */
    int64_t (*drive_dirty_take)(uint32_t drive, uint64_t *bitmap, uint64_t words);
    /* reads len bytes at offset through the block layer (synchronous: the main loop runs I/O meanwhile);
     * 0 or -errno. The range must lie within the drive. */
    int32_t (*drive_read)(uint32_t drive, uint64_t offset, uint8_t *buf, uint64_t len);
    /* VM stopped: writes len bytes at offset; not the guest's write, so not marked dirty; 0 or -errno */
    int32_t (*drive_write)(uint32_t drive, uint64_t offset, const uint8_t *buf, uint64_t len);
    /* ---- since 1.4 (check struct_size) ---- */
    /* the drive's image file on this host (the file or host_device under its format and filter nodes), "" when
     * it is not a local file; host-owned, valid until shutdown; NULL for an unknown drive */
    const char *(*drive_file)(uint32_t drive);
} PloverHostApi;

typedef struct PloverHooks {     /* filled by the library; a NULL hook is never called */
    uint32_t struct_size;
    uint16_t abi_major, abi_minor;
    void *ctx;
    void (*machine_ready)(void *ctx);
    void (*vm_state_changed)(void *ctx, int32_t running, const char *runstate);
    /* a frame going into the guest; copy it before returning; PLOVER_NET_CONSUMED steals it */
    int32_t (*net_to_guest)(void *ctx, uint32_t nic, uint32_t flags, const struct iovec *iov, int32_t iovcnt);
    /* the guest sent frames that are now held (coalesced, after the fact) */
    void (*net_from_guest)(void *ctx, uint32_t nic, uint64_t epoch, uint64_t held_pkts, uint64_t held_bytes);
    void (*shutdown)(void *ctx);
    /* ---- since 1.2 (the host checks struct_size) ---- */
    int32_t (*query)(void *ctx, PloverInfo *info);  /* query-plover: fill info; 0 or a negative errno */
    /* an operator's stop, cont, system_reset or system_powerdown (PLOVER_CMD_*): PLOVER_CMD_RUN,
     * PLOVER_CMD_IGNORE, or a negative errno with a NUL-terminated message in err (the command fails with it) */
    int32_t (*operator_command)(void *ctx, int32_t command, char *err, size_t errlen);
} PloverHooks;

typedef uint32_t (*PloverAbiVersionFn)(void);
typedef int32_t (*PloverInitFn)(const PloverHostApi *host, PloverHooks *hooks, char *err, size_t errlen);
typedef uint64_t (*PloverCityHash64Fn)(const uint8_t *data, size_t len);
typedef int64_t (*PloverHashPagesFn)(const uint8_t *base, uint64_t page_count, const uint64_t *dirty_bitmap,
                                     uint64_t *hashes_out, int32_t threads);
typedef int32_t (*PloverHashKernelFn)(void);
typedef int64_t (*PloverAbiLayoutFn)(const char *type, const char *field);

/*
 * ISA variants. NativeAOT fixes the instruction set at build time and a library built for AVX-512 aborts
 * on a CPU without it, so the library ships as libplover.so (x86-64-v2, runs anywhere) plus
 * libplover.x86-64-v3.so (AVX2) and libplover.x86-64-v4.so (AVX-512). A host given lib=DIR/libplover.so
 * loads the best sibling variant this CPU can run, falling back to the file named.
 * Writes the chosen path into out (size outlen) and returns the variant's level (4, 3 or 0).
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static inline int plover_cpu_level(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return 4;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2"))
        return 3;
    return 0;
}
static inline int plover_pick_variant(const char *lib, char *out, size_t outlen, int max_level)
{
    static const int levels[] = { 4, 3 };
    size_t n = strlen(lib);
    int cpu = plover_cpu_level();
    if (max_level < cpu) cpu = max_level;
    if (n > 3 && strcmp(lib + n - 3, ".so") == 0) {
        for (unsigned i = 0; i < sizeof levels / sizeof levels[0]; i++) {
            if (levels[i] > cpu) continue;
            if (snprintf(out, outlen, "%.*s.x86-64-v%d.so", (int)(n - 3), lib, levels[i]) < (int)outlen &&
                access(out, R_OK) == 0)
                return levels[i];
        }
    }
    snprintf(out, outlen, "%s", lib);
    return 0;
}
#endif

#endif /* PLOVER_ABI_H */
