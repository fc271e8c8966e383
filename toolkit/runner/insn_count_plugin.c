/* qemu TCG plugin: count the guest instructions executed between the runner's start and stop marker syscalls.
 *
 *   qemu-aarch64 -plugin libinsn_count.so,out=COUNTS.txt ...
 *
 * Writes one line per inference (start..stop pair) to COUNTS.txt: the number of guest instructions the marking thread
 * executed in between. Only the thread (vCPU) that made the start marker is counted, so idle or spinning worker
 * threads never leak into the figure, and the counts repeat to the instruction from run to run.
 *
 * How: at translation, each translated block gets an execution callback carrying its instruction count; at run time
 * the callback adds it while a measurement is open. A block that ends in the stop syscall is counted whole (it ran
 * before the syscall), the block ending in the start syscall is not, so the figure covers exactly the code between.
 *
 * Built against qemu 7.2's include/qemu/qemu-plugin.h (plugin API version 1), taken from Debian's qemu source
 * package by scripts/install-emulator-deps.sh. qemu refuses a plugin built for another API version, clearly.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

#include "marker.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static FILE *counts_file;
static int counting;             /* a start marker was seen and no stop yet */
static unsigned int counted_vcpu; /* the thread that made the start marker */
static uint64_t count;

static void on_tb_exec(unsigned int vcpu_index, void *udata)
{
    if (counting && vcpu_index == counted_vcpu) {
        count += (uintptr_t)udata;
    }
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    uintptr_t n_insns = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)n_insns);
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
        counting = 1;
    } else if (a2 == XEDGE_MARKER_STOP && counting && vcpu_index == counted_vcpu) {
        counting = 0;
        fprintf(counts_file, "%" PRIu64 "\n", count);
        fflush(counts_file); /* a guest that crashes later still leaves the finished counts */
    }
}

static void on_plugin_exit(qemu_plugin_id_t id, void *userdata)
{
    fclose(counts_file);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out = argv[i] + 4;
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
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
