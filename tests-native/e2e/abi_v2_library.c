/* A library that claims ABI major 2: QEMU must refuse it by version, before calling init. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

uint32_t plover_qemu_abi_version(void) { return 2u << 16; }

int32_t plover_qemu_init(const void *host, void *hooks, char *err, size_t errlen)
{
    (void)host, (void)hooks;
    strncpy(err, "abi_v2_library: init must never be called", errlen);
    return -1;
}
