/* The few kernel types the TLS tracer reads, declared for CO-RE.
 *
 * Written by hand instead of a whole `vmlinux.h` from `bpftool btf dump`: the build then needs
 * neither bpftool nor the build machine's BTF, and the tracer names exactly what it reads.
 * `preserve_access_index` makes clang record each field access as a relocation, which libbpf
 * resolves against the running kernel's BTF at load time (libbpf finds fields of anonymous
 * unions in the kernel's struct by name, so these flat declarations match). `struct pt_regs` is
 * the x86-64 register frame the kprobe and uprobe macros read (its layout is ABI).
 */
#ifndef TAPWIRE_KERNEL_H
#define TAPWIRE_KERNEL_H

/* libbpf's bpf_tracing.h names pt_regs fields the kernel's way (`di`, not user space's `rdi`)
 * when it sees a vmlinux.h; this file stands in for one. */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef unsigned long size_t;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

/* bpf_ringbuf_output's flags and bpf_ringbuf_query's questions (uapi bpf.h). */
enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};
enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
};

struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

struct in6_addr {
	__u8 s6_addr[16];
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	possible_net_t skc_net;
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct inode {
	unsigned short i_mode;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	struct files_struct *files;
	struct task_struct *group_leader;
	char comm[16];
} __attribute__((preserve_access_index));

/* The context of a raw tracepoint: its arguments (for sys_enter: the pt_regs, the syscall). */
struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

#define S_IFMT 00170000
#define S_IFSOCK 0140000

#define AF_INET 2
#define AF_INET6 10

#endif
