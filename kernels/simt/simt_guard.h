/* simt_guard — tests' proof that the trainer touches device memory only through the op table (kernels/simt/
 * simt_ops.cpp). With the guard on, ops_simt()'s MEM_DEVICE allocations are pages of their own that stay
 * inaccessible (PROT_NONE) while host code runs; they open only while a kernel runs (simt_launch), while a TEMPORARY
 * fallback runs, and inside the table's upload / download / memset / copy_async. A host read or write of device
 * memory is then a SIGSEGV, reported as "host access to device memory" with the address and the allocation's name.
 *
 *   simt_guard(on)         1: allocations from now on are guarded (and the SIGSEGV report installed); 0: off (the
 *                          guarded ones stay guarded until freed)
 *   simt_guard_enter()     open every guarded allocation (nested calls count); simt_guard_leave() closes again
 */
#ifndef ORPO_KERNELS_SIMT_GUARD_H
#define ORPO_KERNELS_SIMT_GUARD_H

#ifdef __cplusplus
extern "C" {
#endif

void simt_guard(int on);
void simt_guard_enter(void);
void simt_guard_leave(void);

#ifdef __cplusplus
}
#endif

#endif
