/* qemu TCG plugin: count the guest instructions executed between the runner's start and stop marker syscalls, and
 * (optionally) profile one of those measured windows for a cycle estimate.
 *
 *   qemu-aarch64 -plugin libinsn_count.so,out=COUNTS.txt[,profile=PROFILE.txt,window=K,l1=BYTES:WAYS,l2=BYTES:WAYS,
 *                       l3=BYTES:WAYS,line=64,prefetch=DEGREE] ...
 *
 * COUNTS.txt: one line per inference (start..stop pair): the number of guest instructions the marking thread executed
 * in between. Only the thread (vCPU) that made the start marker is counted, so idle or spinning worker threads never
 * leak into the figure, and the counts repeat to the instruction from run to run.
 *
 * How: at translation, each translated block gets an execution callback carrying its block record; at run time the
 * callback adds its instruction count while a measurement is open. A block that ends in the stop syscall is counted
 * whole (it ran before the syscall), the block ending in the start syscall is not, so the figure covers exactly the
 * code between.
 *
 * PROFILE.txt (only with profile=): for measured window K (0-based; the Python side asks for the last one, i.e. a
 * steady-state inference), every executed translated block with its instruction bytes and how often EACH thread
 * executed it inside the window, plus per-thread data-cache statistics from a small simulation:
 *
 *   P 1                                   format version
 *   W K MAIN_VCPU                         the profiled window and the thread that made the markers
 *   B VADDR N_INSNS HEXBYTES V:COUNT ...  one executed block (counts per vCPU inside the window)
 *   C VCPU LOADS STORES L1_MISS L2_MISS L3_MISS PF_ISSUED   line-granular accesses and DEMAND misses per level
 *   E                                     end (a complete file)
 *
 * The cache model (per thread, private levels; l3=0:0 means none): set-associative, LRU, write-allocate, lines of
 * `line` bytes. It starts at the measured window BEFORE the profiled one (so the profiled window starts warm, as a
 * steady-state inference on a device does, without simulating the program's start-up); only accesses inside the
 * profiled window are counted. A per-instruction stride
 * prefetcher (the kind Cortex-A72/A76 L1 prefetchers are: it trains on a load or store instruction's line stride and
 * fetches DEGREE lines ahead into L1 and L2) runs when prefetch>0. Accesses are what qemu reports, i.e. a 16-byte
 * vector load may be two 8-byte accesses: statistics are per touched line, so that does not inflate misses.
 *
 * Threads run concurrently (qemu user mode, one host thread per guest thread): every per-thread slot is written only
 * by its own thread; block translation is serialized by a mutex.
 *
 * Built against qemu 7.2's include/qemu/qemu-plugin.h (plugin API version 1), taken from Debian's qemu source
 * package by scripts/install-emulator-deps.sh. qemu refuses a plugin built for another API version, clearly.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

#include "marker.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_VCPUS 32 /* threads beyond this are left out of the profile (counted as dropped) */

static FILE *counts_file;
static volatile int counting;     /* a start marker was seen and no stop yet */
static unsigned int counted_vcpu; /* the thread that made the start marker */
static uint64_t count;
static long window_index = -1; /* index of the open (or last) measured window */

/* ------------------------------------------------------------------------------------------------- profiling */

static FILE *profile_file;
static long profile_window = -1; /* which measured window to profile; -1: none */
static volatile int profiling;   /* the profiled window is open */
static volatile int simulating;  /* the cache model is running (from the window before the profiled one) */

struct block {
    uint64_t vaddr;
    uint32_t n_insns;
    uint32_t n_bytes;
    uint64_t hash;
    uint8_t *bytes;
    uint64_t counts[MAX_VCPUS];
    struct block *next_in_bucket;
    struct block *next_all;
};

#define BUCKETS (1u << 16)
static struct block *buckets[BUCKETS];
static struct block *all_blocks;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t fnv1a(const uint8_t *data, size_t n, uint64_t seed)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= data[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* One record per distinct (address, bytes): a block qemu translates again (after a flush, or with other flags) keeps
 * adding to the same counts. */
static struct block *find_or_add_block(uint64_t vaddr, uint32_t n_insns, const uint8_t *bytes, uint32_t n_bytes)
{
    uint64_t hash = fnv1a(bytes, n_bytes, vaddr * 0x9E3779B97F4A7C15ULL + n_insns);
    unsigned int bucket = (unsigned int)(hash ^ (hash >> 29)) & (BUCKETS - 1);
    pthread_mutex_lock(&table_lock);
    struct block *b;
    for (b = buckets[bucket]; b != NULL; b = b->next_in_bucket) {
        if (b->hash == hash && b->vaddr == vaddr && b->n_insns == n_insns && b->n_bytes == n_bytes &&
            memcmp(b->bytes, bytes, n_bytes) == 0) {
            pthread_mutex_unlock(&table_lock);
            return b;
        }
    }
    b = calloc(1, sizeof(*b));
    b->vaddr = vaddr;
    b->n_insns = n_insns;
    b->n_bytes = n_bytes;
    b->hash = hash;
    b->bytes = malloc(n_bytes ? n_bytes : 1);
    memcpy(b->bytes, bytes, n_bytes);
    b->next_in_bucket = buckets[bucket];
    buckets[bucket] = b;
    b->next_all = all_blocks;
    all_blocks = b;
    pthread_mutex_unlock(&table_lock);
    return b;
}

/* ------------------------------------------------------------------------------------------------ cache model */

struct cache {
    uint32_t sets; /* power of two */
    uint32_t ways;
    uint64_t *tags; /* [sets][ways], line number + 1, most recently used first; 0 = empty */
};

struct vcpu_state {
    struct cache l1, l2, l3;
    uint64_t last_line; /* the previous access's line: consecutive accesses to one line count once */
    /* statistics inside the profiled window */
    uint64_t loads, stores, l1_miss, l2_miss, l3_miss, pf_issued;
};

static struct vcpu_state *vcpus[MAX_VCPUS];
static uint64_t l1_bytes, l2_bytes, l3_bytes;
static uint32_t l1_ways, l2_ways, l3_ways;
static uint32_t line_shift = 6;
static int prefetch_degree;
static int simulate_caches;

#define PF_VCPUS 16 /* threads that get a prefetcher */

struct insn_state { /* per memory instruction: the stride prefetcher's training state, per thread */
    int64_t last_line[PF_VCPUS];
    int32_t stride[PF_VCPUS];
    uint8_t confidence[PF_VCPUS];
};

/* Each translated instruction gets one pointer slot; its state is allocated on its first memory access (most
 * instructions never access memory, and translated code is large). */
static struct insn_state *insn_state_of(struct insn_state **slot)
{
    struct insn_state *state = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (state == NULL) {
        struct insn_state *fresh = calloc(1, sizeof(*fresh));
        for (int v = 0; v < PF_VCPUS; v++) {
            fresh->last_line[v] = INT64_MIN / 2;
        }
        if (__atomic_compare_exchange_n(slot, &state, fresh, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            state = fresh;
        } else {
            free(fresh); /* another thread won; ``state`` now holds its pointer */
        }
    }
    return state;
}

static int cache_init(struct cache *c, uint64_t bytes, uint32_t ways)
{
    if (bytes == 0 || ways == 0) {
        c->sets = 0;
        return 0;
    }
    uint64_t sets = bytes >> line_shift;
    sets /= ways;
    if (sets == 0 || (sets & (sets - 1)) != 0) {
        return -1;
    }
    c->sets = (uint32_t)sets;
    c->ways = ways;
    c->tags = calloc((size_t)sets * ways, sizeof(uint64_t));
    return c->tags ? 0 : -1;
}

/* Look ``line`` up; on a miss insert it (evicting the LRU way). Returns 1 on a hit. */
static int cache_access(struct cache *c, uint64_t line)
{
    uint64_t tag = line + 1;
    uint64_t *set = c->tags + (size_t)(line & (c->sets - 1)) * c->ways;
    uint32_t w;
    for (w = 0; w < c->ways; w++) {
        if (set[w] == tag) {
            break;
        }
    }
    int hit = w < c->ways;
    if (!hit) {
        w = c->ways - 1;
    }
    memmove(set + 1, set, w * sizeof(uint64_t));
    set[0] = tag;
    return hit;
}

static struct vcpu_state *vcpu_state(unsigned int vcpu)
{
    if (vcpu >= MAX_VCPUS) {
        return NULL;
    }
    struct vcpu_state *s = vcpus[vcpu];
    if (s == NULL) { /* first access by this thread: only this thread ever writes its slot */
        s = calloc(1, sizeof(*s));
        cache_init(&s->l1, l1_bytes, l1_ways);
        cache_init(&s->l2, l2_bytes, l2_ways);
        cache_init(&s->l3, l3_bytes, l3_ways);
        s->last_line = UINT64_MAX;
        vcpus[vcpu] = s;
    }
    return s;
}

/* Bring ``line`` into the hierarchy without counting it as a demand access. */
static void prefetch_line(struct vcpu_state *s, uint64_t line)
{
    if (!cache_access(&s->l1, line) && !cache_access(&s->l2, line) && s->l3.sets) {
        cache_access(&s->l3, line);
    }
}

static void on_mem(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    if (!simulating) {
        return;
    }
    struct vcpu_state *s = vcpu_state(vcpu);
    if (s == NULL) {
        return;
    }
    uint64_t line = vaddr >> line_shift;
    uint64_t last = ((vaddr + (1u << qemu_plugin_mem_size_shift(info)) - 1) >> line_shift);
    int store = qemu_plugin_mem_is_store(info);
    int counted = profiling;
    for (; line <= last; line++) {
        if (line == s->last_line) {
            continue;
        }
        s->last_line = line;
        if (counted) {
            if (store) {
                s->stores++;
            } else {
                s->loads++;
            }
        }
        int l1_hit = cache_access(&s->l1, line);
        if (!l1_hit) {
            int l2_hit = cache_access(&s->l2, line);
            int l3_hit = l2_hit || (s->l3.sets && cache_access(&s->l3, line));
            if (counted && !store) { /* stores retire into the store buffer: only load misses stall */
                s->l1_miss++;
                s->l2_miss += !l2_hit;
                s->l3_miss += !l2_hit && !l3_hit && s->l3.sets;
            }
        }
        if (prefetch_degree > 0 && vcpu < PF_VCPUS) {
            struct insn_state *p = insn_state_of(udata);
            int64_t delta = (int64_t)line - p->last_line[vcpu];
            if (delta != 0) {
                if (delta == p->stride[vcpu]) {
                    if (p->confidence[vcpu] < 255) {
                        p->confidence[vcpu]++;
                    }
                } else {
                    p->stride[vcpu] = delta >= -64 && delta <= 64 ? (int32_t)delta : 0; /* far jumps never train */
                    p->confidence[vcpu] = 0;
                }
                p->last_line[vcpu] = (int64_t)line;
                if (p->confidence[vcpu] >= 2) { /* trained: the stream is fetched DEGREE strides ahead */
                    for (int k = 1; k <= prefetch_degree; k++) {
                        prefetch_line(s, line + (uint64_t)(p->stride[vcpu] * k));
                    }
                    if (counted) {
                        s->pf_issued += prefetch_degree;
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------- callbacks */

static void on_tb_exec(unsigned int vcpu_index, void *udata)
{
    struct block *b = udata;
    if (counting && vcpu_index == counted_vcpu) {
        count += b->n_insns;
    }
    if (profiling && vcpu_index < MAX_VCPUS) {
        b->counts[vcpu_index]++;
    }
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n_insns = qemu_plugin_tb_n_insns(tb);
    uint8_t buffer[4096];
    uint32_t n_bytes = 0;
    struct insn_state **slots = simulate_caches ? calloc(n_insns ? n_insns : 1, sizeof(*slots)) : NULL;
    for (size_t i = 0; i < n_insns; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        size_t size = qemu_plugin_insn_size(insn);
        if (n_bytes + size <= sizeof(buffer)) {
            memcpy(buffer + n_bytes, qemu_plugin_insn_data(insn), size);
            n_bytes += (uint32_t)size;
        }
        if (simulate_caches) {
            qemu_plugin_register_vcpu_mem_cb(insn, on_mem, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, slots + i);
        }
    }
    struct block *b = find_or_add_block(qemu_plugin_tb_vaddr(tb), (uint32_t)n_insns, buffer, n_bytes);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void write_profile(void)
{
    fprintf(profile_file, "P 1\nW %ld %u\n", profile_window, counted_vcpu);
    for (struct block *b = all_blocks; b != NULL; b = b->next_all) {
        int executed = 0;
        for (int v = 0; v < MAX_VCPUS; v++) {
            executed |= b->counts[v] != 0;
        }
        if (!executed) {
            continue;
        }
        fprintf(profile_file, "B %" PRIx64 " %u ", b->vaddr, b->n_insns);
        for (uint32_t i = 0; i < b->n_bytes; i++) {
            fprintf(profile_file, "%02x", b->bytes[i]);
        }
        for (int v = 0; v < MAX_VCPUS; v++) {
            if (b->counts[v]) {
                fprintf(profile_file, " %d:%" PRIu64, v, b->counts[v]);
            }
        }
        fputc('\n', profile_file);
    }
    for (int v = 0; v < MAX_VCPUS; v++) {
        struct vcpu_state *s = vcpus[v];
        if (s != NULL && (s->loads || s->stores)) {
            fprintf(profile_file, "C %d %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", v,
                    s->loads, s->stores, s->l1_miss, s->l2_miss, s->l3_miss, s->pf_issued);
        }
    }
    fprintf(profile_file, "E\n");
    fflush(profile_file);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num != XEDGE_MARKER_SYSCALL || a1 != (uint64_t)XEDGE_MARKER_MAGIC) {
        return;
    }
    if (a2 == XEDGE_MARKER_START) {
        counted_vcpu = vcpu_index;
        count = 0;
        window_index++;
        counting = 1;
        profiling = profile_file != NULL && window_index == profile_window;
        simulating = simulating || (profile_file != NULL && window_index >= profile_window - 1);
    } else if (a2 == XEDGE_MARKER_STOP && counting && vcpu_index == counted_vcpu) {
        counting = 0;
        fprintf(counts_file, "%" PRIu64 "\n", count);
        fflush(counts_file); /* a guest that crashes later still leaves the finished counts */
        if (profiling) {
            profiling = 0;
            write_profile();
        }
    }
}

static void on_plugin_exit(qemu_plugin_id_t id, void *userdata)
{
    fclose(counts_file);
    if (profile_file != NULL) {
        fclose(profile_file);
    }
}

static int parse_cache(const char *value, uint64_t *bytes, uint32_t *ways)
{
    unsigned long long b;
    unsigned int w;
    if (sscanf(value, "%llu:%u", &b, &w) != 2) {
        return -1;
    }
    *bytes = b;
    *ways = w;
    return 0;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *out = NULL, *profile = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int bad = 0;
        if (strncmp(a, "out=", 4) == 0) {
            out = a + 4;
        } else if (strncmp(a, "profile=", 8) == 0) {
            profile = a + 8;
        } else if (strncmp(a, "window=", 7) == 0) {
            profile_window = strtol(a + 7, NULL, 10);
        } else if (strncmp(a, "l1=", 3) == 0) {
            bad = parse_cache(a + 3, &l1_bytes, &l1_ways);
        } else if (strncmp(a, "l2=", 3) == 0) {
            bad = parse_cache(a + 3, &l2_bytes, &l2_ways);
        } else if (strncmp(a, "l3=", 3) == 0) {
            bad = parse_cache(a + 3, &l3_bytes, &l3_ways);
        } else if (strncmp(a, "line=", 5) == 0) {
            unsigned long line = strtoul(a + 5, NULL, 10);
            line_shift = 0;
            while ((1ul << line_shift) < line) {
                line_shift++;
            }
            bad = (1ul << line_shift) != line;
        } else if (strncmp(a, "prefetch=", 9) == 0) {
            prefetch_degree = (int)strtol(a + 9, NULL, 10);
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "insn_count plugin: bad argument '%s'\n", a);
            return -1;
        }
    }
    if (out == NULL) {
        fprintf(stderr, "insn_count plugin: give the counts file as -plugin PATH,out=COUNTS.txt\n");
        return -1;
    }
    counts_file = fopen(out, "w");
    if (counts_file == NULL) {
        fprintf(stderr, "insn_count plugin: cannot write '%s'\n", out);
        return -1;
    }
    if (profile != NULL) {
        profile_file = fopen(profile, "w");
        if (profile_file == NULL) {
            fprintf(stderr, "insn_count plugin: cannot write '%s'\n", profile);
            return -1;
        }
        simulate_caches = l1_bytes > 0;
        uint64_t sizes[3] = {l1_bytes, l2_bytes, l3_bytes};
        uint32_t ways[3] = {l1_ways, l2_ways, l3_ways};
        for (int level = 0; simulate_caches && level < 3; level++) {
            struct cache probe = {0};
            int bad = cache_init(&probe, sizes[level], ways[level]);
            free(probe.tags);
            if (bad || (level < 2 && probe.sets == 0)) {
                fprintf(stderr, "insn_count plugin: L%d: give BYTES:WAYS with a power-of-two number of sets\n",
                        level + 1);
                return -1;
            }
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
