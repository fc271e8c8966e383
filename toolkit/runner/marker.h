/* The marker syscall that brackets one inference, shared by the runner and the qemu instruction-count plugin.
 *
 * Number 0x5845 ("XE") is far above any syscall Linux defines on aarch64 or x86_64, so on a real kernel the call
 * does nothing and returns ENOSYS; under qemu user-mode the plugin sees it before qemu answers ENOSYS.
 * toolkit/runner/tflite_guest.py uses the same numbers through ctypes: keep them in step.
 */
#ifndef XEDGE_MARKER_H
#define XEDGE_MARKER_H

#define XEDGE_MARKER_SYSCALL 0x5845
#define XEDGE_MARKER_MAGIC 0x7865646765L /* "xedge" */
#define XEDGE_MARKER_START 1
#define XEDGE_MARKER_STOP 0

#endif
