/* Small helpers shared by the subcommands. */
#include <vtio/mem.h>

#include <stdlib.h>
#include <string.h>

#include "commands.h"

unsigned long long vtio_tool_parse_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    return *end ? 0 : v;
}

void vtio_tool_fill_random(struct vtio_mem *mem, uint64_t pa, uint64_t len, uint64_t seed)
{
    uint64_t chunk[4096];
    uint64_t x = seed * 0x9e3779b97f4a7c15ull | 1;
    for (uint64_t off = 0; off < len; off += sizeof(chunk)) {
        for (size_t i = 0; i < 4096; i++)
            x ^= x << 13, x ^= x >> 7, x ^= x << 17, chunk[i] = x;
        uint64_t n = len - off < sizeof(chunk) ? len - off : sizeof(chunk);
        vtio_mem_write(mem, pa + off, chunk, n);
    }
}

bool vtio_tool_same_bytes(struct vtio_mem *mem, uint64_t a, uint64_t b, uint64_t len)
{
    static uint8_t ba[1 << 20], bb[1 << 20];
    for (uint64_t off = 0; off < len; off += sizeof(ba)) {
        uint64_t n = len - off < sizeof(ba) ? len - off : sizeof(ba);
        vtio_mem_read(mem, a + off, ba, n);
        vtio_mem_read(mem, b + off, bb, n);
        if (memcmp(ba, bb, n))
            return false;
    }
    return true;
}
