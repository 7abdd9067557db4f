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
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

struct in6_addr {
	__u8 s6_addr[16];
} __attribute__((preserve_access_index));

struct sock_common {
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

#define AF_INET 2
#define AF_INET6 10

#endif
