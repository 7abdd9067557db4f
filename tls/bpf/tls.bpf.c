// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The plaintext programs hand to OpenSSL, read where they hand it over.
 *
 * Licence: this one file is GPL-2.0 or BSD-2-Clause (the rest of tapwire is Apache-2.0), because
 * the kernel lets only GPL-compatible programs read user memory (`bpf_probe_read_user`).
 *
 * What it does, per thread:
 * 1. On entry to SSL_write / SSL_read (and the `_ex` forms Python uses), remember the call: the
 *    `SSL*`, the buffer, where the `_ex` forms write the byte count.
 * 2. While that call runs, the system calls the same thread makes on a descriptor (read, write,
 *    send*, recv*) name the kernel socket it moves bytes through (found from the descriptor
 *    through the task's file table); its addresses and ports are read with CO-RE. A call that
 *    touches two sockets is rejected (counted). That binds the `SSL*` to its TCP connection
 *    without reading OpenSSL's structures (which change across versions and custom BIOs).
 * 3. On return, the bytes actually moved are copied into the ring buffer in chunks of at most
 *    CHUNK_CAP bytes, at most MAX_CHUNKS per call (the rest is counted as truncated). Each chunk
 *    carries the connection's per-direction byte offset, which advances by every byte moved,
 *    sent or not, so a lost or truncated chunk is a visible jump in offsets (a gap).
 *    An SSL_read served from OpenSSL's buffer makes no syscall: the binding cached per
 *    (process, `SSL*`) is used; a call with neither is sent unbound (flag, counted).
 *
 * 4. Every exec on the node is reported (its process id, in a small ring buffer of its own), so
 *    a program that starts after the probes is inspected and attached to at once.
 *
 * Caps: CHUNK_CAP bytes per chunk, MAX_CHUNKS chunks per call, MAX_CALLS threads in a call at
 * once, MAX_CONNS bound connections (LRU: the least recently used binding goes first), the
 * ring buffer's size (set by the loader). Every loss is counted in `counters`.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define CHUNK_CAP 16384
#define MAX_CHUNKS 16
#define MAX_CALLS 16384
#define MAX_CONNS 65536

#define DIR_WRITE 0
#define DIR_READ 1

/* Chunk flags. */
#define FLAG_UNBOUND 1 /* no socket known for this SSL*: addresses are zero */
#define FLAG_NEW_CONN 2 /* first chunk of a new binding of this SSL* (offsets restart) */

/* Counter slots (the loader names them in the same order). */
enum counter {
	C_CALLS,
	C_CHUNKS,
	C_BYTES,
	C_LOST_CHUNKS,
	C_LOST_BYTES,
	C_TRUNCATED_BYTES,
	C_TWO_SOCKETS,
	C_UNBOUND,
	C_READ_FAULTS,
	C_CALLS_CAP,
	C_EXECS_LOST,
	C_COUNT,
};

struct tuple {
	__u8 saddr[16]; /* the traced process's side */
	__u8 daddr[16]; /* its peer */
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 pad;
};

struct call {
	__u64 ssl;
	__u64 buf;
	__u64 count_ptr; /* `_ex` forms: where the byte count is written; 0 otherwise */
	__u64 sk; /* the socket seen during the call, 0 if none */
	__u32 dir;
	__u32 sockets;
	struct tuple t;
	__u32 netns; /* the socket's network namespace (its inode number) */
	__u32 pad;
	__u64 start; /* when the call was made (CLOCK_MONOTONIC) */
};

struct conn_key {
	__u64 ssl;
	__u32 tgid;
	__u32 pad;
};

struct conn {
	__u64 sk;
	__u64 offset[2];
	__u32 generation;
	__u32 fresh; /* set until the first chunk of this generation is sent */
	struct tuple t;
	__u32 netns;
	__u32 pad;
};

struct chunk_hdr {
	__u64 ts_ns; /* CLOCK_MONOTONIC */
	__u64 ssl;
	__u64 offset; /* of data[0] in this direction of this generation */
	__u32 tgid;
	__u32 tid;
	__u32 len; /* bytes in data */
	__u32 generation;
	__u8 dir;
	__u8 flags;
	__u16 pad;
	__u32 netns; /* network namespace inode: the same addresses in two namespaces differ */
	struct tuple t;
	char comm[16]; /* the process's name (its main thread's), NUL-padded */
};

/* tls/src/chunk.rs reads this layout. */
_Static_assert(sizeof(struct chunk_hdr) == 104, "chunk header layout changed");

struct chunk {
	struct chunk_hdr h;
	__u8 data[CHUNK_CAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CALLS);
	__type(key, __u64);
	__type(value, struct call);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_CONNS);
	__type(key, struct conn_key);
	__type(value, struct conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* the loader may resize it */
} chunks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct chunk);
} scratch SEC(".maps");

/* The process id of every exec on the node, so the loader inspects a new program at once
 * (a Go program carries its TLS in its own executable, which needs probes of its own). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 10);
} execs SEC(".maps");

/* Set by the loader: slot 0 is the agent's own process id, whose calls are never traced. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &slot);
	if (v)
		*v += n;
}

static __always_inline int enter(__u64 ssl, __u64 buf, __u64 count_ptr, __u32 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 zero = 0;
	__u32 *self = bpf_map_lookup_elem(&settings, &zero);
	if (self && *self == (__u32)(id >> 32))
		return 0;
	struct call c = {};
	c.ssl = ssl;
	c.buf = buf;
	c.count_ptr = count_ptr;
	c.dir = dir;
	c.start = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&calls, &id, &c, BPF_ANY))
		count(C_CALLS_CAP, 1);
	return 0;
}

/* The kernel socket behind descriptor `fd` of the current task, or 0 when `fd` is not an IPv4 or
 * IPv6 socket. Reads task->files->fdt->fd[fd]->private_data->sk with CO-RE. */
static __always_inline struct sock *socket_of(int fd)
{
	if (fd < 0)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return 0;
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max)
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	unsigned short mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *so = BPF_CORE_READ(f, private_data);
	if (!so)
		return 0;
	struct sock *sk = BPF_CORE_READ(so, sk);
	if (!sk)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	return sk;
}

/* A socket this thread moves bytes through while a TLS call runs: note it and its addresses. */
static __always_inline void on_socket(struct call *c, struct sock *sk)
{
	if (c->sk == (__u64)sk)
		return;
	c->sockets++;
	if (c->sk)
		return;
	c->sk = (__u64)sk;
	c->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	c->t.family = family;
	c->t.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->t.dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__be32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(c->t.saddr, &s, 4);
		__builtin_memcpy(c->t.daddr, &d, 4);
	} else {
		BPF_CORE_READ_INTO(&c->t.saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&c->t.daddr, sk, __sk_common.skc_v6_daddr);
	}
}

/* Every system call's entry (a raw tracepoint: no kprobes, fentry or tracefs needed, which
 * some kernels lack or refuse). Costs a switch per system call on the node and a hash lookup
 * per read or write of any kind; only a thread inside a traced TLS call goes further. The syscalls that move a socket's bytes take
 * the descriptor as their first argument (x86-64 numbers). */
SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	switch (ctx->args[1]) {
	case 0: /* read */
	case 1: /* write */
	case 19: /* readv */
	case 20: /* writev */
	case 44: /* sendto */
	case 45: /* recvfrom */
	case 46: /* sendmsg */
	case 47: /* recvmsg */
	case 299: /* recvmmsg */
	case 307: /* sendmmsg */
		break;
	default:
		return 0;
	}
	/* The number first: most system calls stop here without a map lookup. */
	__u64 id = bpf_get_current_pid_tgid();
	struct call *c = bpf_map_lookup_elem(&calls, &id);
	if (!c)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	unsigned long fd = 0;
	if (bpf_probe_read_kernel(&fd, sizeof(fd), &regs->di))
		return 0;
	struct sock *sk = socket_of((int)fd);
	if (sk)
		on_socket(c, sk);
	return 0;
}

/* A process replaced its program (a raw tracepoint, like sys_enter). */
SEC("raw_tracepoint/sched_process_exec")
int on_exec(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_ringbuf_output(&execs, &pid, sizeof(pid), 0))
		count(C_EXECS_LOST, 1);
	return 0;
}

/* Whether to wake the reader for this chunk: only once a quarter of the ring is waiting. Waking
 * it for every chunk (the default) queues an irq_work and an IPI per TLS call: measured at
 * 8.4 µs of 8.8 µs per return probe on the test VM. The reader consumes on a short tick
 * instead (`Tracer::poll`), so a quiet ring is read within one tick and a busy one at once. */
static __always_inline __u64 wakeup(void)
{
	__u64 waiting = bpf_ringbuf_query(&chunks, BPF_RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(&chunks, BPF_RB_RING_SIZE);
	return waiting >= size / 4 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void send_chunks(struct call *c, struct conn *conn, __u64 n, __u64 id,
					__u8 flags)
{
	__u32 zero = 0;
	struct chunk *ch = bpf_map_lookup_elem(&scratch, &zero);
	__u32 dir = c->dir & 1;
	__u64 base = conn->offset[dir];
	conn->offset[dir] = base + n;
	if (!ch) {
		count(C_LOST_BYTES, n);
		return;
	}
	/* A write is stamped when it was called (before its bytes left), a read when it returned
	 * (after they arrived): in time order a request comes before its answer, even when the
	 * answer's read (another thread's) reaches the ring buffer first. */
	ch->h.ts_ns = dir == DIR_WRITE ? c->start : bpf_ktime_get_ns();
	ch->h.ssl = c->ssl;
	ch->h.tgid = id >> 32;
	ch->h.tid = (__u32)id;
	ch->h.generation = conn->generation;
	ch->h.dir = dir;
	ch->h.t = conn->t;
	ch->h.netns = conn->netns;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	BPF_CORE_READ_INTO(&ch->h.comm, task, group_leader, comm);
	__u64 done = 0;
	for (int i = 0; i < MAX_CHUNKS; i++) {
		if (done >= n)
			break;
		__u64 part = n - done;
		if (part > CHUNK_CAP)
			part = CHUNK_CAP;
		barrier_var(part);
		if (part > CHUNK_CAP)
			break;
		ch->h.offset = base + done;
		ch->h.len = part;
		ch->h.flags = flags;
		if (bpf_probe_read_user(ch->data, part, (void *)(c->buf + done))) {
			count(C_READ_FAULTS, 1);
			count(C_LOST_BYTES, part);
		} else if (bpf_ringbuf_output(&chunks, ch, sizeof(ch->h) + part, wakeup())) {
			count(C_LOST_CHUNKS, 1);
			count(C_LOST_BYTES, part);
		} else {
			count(C_CHUNKS, 1);
			count(C_BYTES, part);
		}
		flags &= ~FLAG_NEW_CONN;
		done += part;
	}
	if (done < n)
		count(C_TRUNCATED_BYTES, n - done);
}

/* Whether two connections' addresses and ports are the same. */
static __always_inline bool same_tuple(const struct tuple *a, const struct tuple *b)
{
	__u64 a0, a1, b0, b1;
	__builtin_memcpy(&a0, a->daddr, 8);
	__builtin_memcpy(&a1, a->daddr + 8, 8);
	__builtin_memcpy(&b0, b->daddr, 8);
	__builtin_memcpy(&b1, b->daddr + 8, 8);
	return a->sport == b->sport && a->dport == b->dport && a->family == b->family &&
	       a0 == b0 && a1 == b1;
}

/* A call returned having moved `n` bytes: bind its connection, send its chunks. */
static __always_inline void finish(struct call *c, __u64 n, __u64 id)
{
	count(C_CALLS, 1);
	if (c->sockets > 1) {
		count(C_TWO_SOCKETS, 1);
		return;
	}
	struct conn_key key = { .ssl = c->ssl, .tgid = id >> 32 };
	struct conn *conn = bpf_map_lookup_elem(&conns, &key);
	__u8 flags = 0;
	if (c->sk && (!conn || conn->sk != c->sk || !same_tuple(&conn->t, &c->t))) {
		/* A first binding, or this SSL* now talks over another socket, or over the same
		 * socket structure reused by a new connection (other addresses): a new generation
		 * whose offsets start at 0. */
		struct conn fresh = {};
		fresh.sk = c->sk;
		fresh.t = c->t;
		fresh.netns = c->netns;
		fresh.fresh = 1;
		fresh.generation = conn ? conn->generation + 1 : 0;
		bpf_map_update_elem(&conns, &key, &fresh, BPF_ANY);
		conn = bpf_map_lookup_elem(&conns, &key);
	}
	if (!conn) {
		/* No socket ever seen for this SSL* (the connection predates the probes and OpenSSL
		 * served this read from its buffer): remember it unbound, zero addresses. */
		struct conn unbound = {};
		unbound.fresh = 1;
		bpf_map_update_elem(&conns, &key, &unbound, BPF_NOEXIST);
		conn = bpf_map_lookup_elem(&conns, &key);
		if (!conn)
			return;
	}
	if (n == 0)
		return;
	if (!conn->sk) {
		flags |= FLAG_UNBOUND;
		count(C_UNBOUND, 1);
	}
	if (conn->fresh) {
		flags |= FLAG_NEW_CONN;
		conn->fresh = 0;
	}
	send_chunks(c, conn, n, id, flags);
}

static __always_inline int leave(int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call *c = bpf_map_lookup_elem(&calls, &id);
	if (!c)
		return 0;
	__u64 n = 0;
	if (c->count_ptr) {
		size_t moved = 0;
		if (ret == 1 && !bpf_probe_read_user(&moved, sizeof(moved), (void *)c->count_ptr))
			n = moved;
	} else if (ret > 0) {
		n = ret;
	}
	finish(c, n, id);
	bpf_map_delete_elem(&calls, &id);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_entry, void *ssl, void *buf, int num)
{
	return enter((__u64)ssl, (__u64)buf, 0, DIR_WRITE);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_entry, void *ssl, void *buf, int num)
{
	return enter((__u64)ssl, (__u64)buf, 0, DIR_READ);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_entry, void *ssl, void *buf, size_t num, size_t *written)
{
	return enter((__u64)ssl, (__u64)buf, (__u64)written, DIR_WRITE);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_entry, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	return enter((__u64)ssl, (__u64)buf, (__u64)readbytes, DIR_READ);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_return, int ret)
{
	return leave(ret);
}

/* Go's crypto/tls (Go >= 1.17, register ABI on x86-64): `(*Conn).Write(b)` and `(*Conn).Read(b)`
 * take the receiver in RAX and the slice in RBX (pointer) and RCX (length), return the byte
 * count in RAX, and R14 holds the running goroutine throughout. A goroutine can move between
 * threads inside the call, so calls are keyed by goroutine, not by thread; the probes on each
 * RET instruction (never a uretprobe: Go moves stacks) find the call by the same key.
 *
 * The socket is found at entry from Go's own structures, stable since Go 1.9: the Conn's first
 * field is its net.Conn (an interface: type word, then data pointer); for a *net.TCPConn the
 * data points at a pointer to the netFD, whose poll.FD holds the descriptor 16 bytes in (after
 * its 16-byte fdMutex). A Conn over something else (a custom net.Conn) yields a descriptor that
 * is not an IPv4/IPv6 socket of the task, or none: its chunks are sent unbound (counted). */
struct go_key {
	__u64 g;
	__u32 tgid;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH); /* a goroutine that never returns must not pin a slot */
	__uint(max_entries, MAX_CONNS);
	__type(key, struct go_key);
	__type(value, struct call);
} go_calls SEC(".maps");

static __always_inline int go_enter(struct pt_regs *ctx, __u32 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 zero = 0;
	__u32 *self = bpf_map_lookup_elem(&settings, &zero);
	if (self && *self == (__u32)(id >> 32))
		return 0;
	struct go_key key = { .g = ctx->r14, .tgid = id >> 32 };
	struct call c = {};
	c.ssl = ctx->ax;
	c.buf = ctx->bx;
	c.dir = dir;
	c.start = bpf_ktime_get_ns();
	__u64 data = 0, netfd = 0;
	__s64 fd = -1;
	if (!bpf_probe_read_user(&data, sizeof(data), (void *)(c.ssl + 8)) && data &&
	    !bpf_probe_read_user(&netfd, sizeof(netfd), (void *)data) && netfd &&
	    !bpf_probe_read_user(&fd, sizeof(fd), (void *)(netfd + 16)) && fd >= 0 &&
	    fd < (1 << 20)) {
		struct sock *sk = socket_of((int)fd);
		if (sk)
			on_socket(&c, sk);
	}
	if (bpf_map_update_elem(&go_calls, &key, &c, BPF_ANY))
		count(C_CALLS_CAP, 1);
	return 0;
}

SEC("uprobe")
int go_write_entry(struct pt_regs *ctx)
{
	return go_enter(ctx, DIR_WRITE);
}

SEC("uprobe")
int go_read_entry(struct pt_regs *ctx)
{
	return go_enter(ctx, DIR_READ);
}

SEC("uprobe")
int go_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_key key = { .g = ctx->r14, .tgid = id >> 32 };
	struct call *c = bpf_map_lookup_elem(&go_calls, &key);
	if (!c)
		return 0;
	__s64 n = ctx->ax;
	finish(c, n > 0 ? n : 0, id);
	bpf_map_delete_elem(&go_calls, &key);
	return 0;
}
