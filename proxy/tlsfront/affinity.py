"""Client-address affinity: one session cache that works across worker processes.

Theory of operation (docs/sessions.md has the why and the trade-offs):

- pyOpenSSL binds no external session-cache callbacks, so the server-side session-ID cache
  (TLS 1.2 session IDs, TLS 1.3 *stateful* tickets) lives inside each worker process.
  mod_ssl's answer was a cache in shared memory (`SSLSessionCache shmcb`); ours is to make
  every connection of a client reach the worker that holds its session.
- For each listening address the master opens N sockets (one per worker), all with
  SO_REUSEPORT on the same address: a *reuseport group*. The kernel picks a socket of the
  group per incoming connection; a classic BPF program attached with
  SO_ATTACH_REUSEPORT_CBPF makes that choice: it returns an index into the group, and we
  return ``hash(client source address) % N``. Same client address, same socket, same
  worker, same session cache.
- The program runs with the packet's data pointing past the TCP header (the kernel pulls
  the transport header before running it: net/core/sock_reuseport.c, run_bpf_filter), so
  the IP header is read with the negative "network header" offset SKF_NET_OFF: the IPv4
  source is at +12, the IPv6 source at +8..+23 (its four words are XOR-folded). The IP
  version nibble decides which, so dual-stack sockets work too.
- The index is the order in which the sockets joined the group (listen()). Closing a
  socket reorders the group (the last one moves into the hole), so the master keeps every
  socket open for its whole life: a worker that dies leaves its socket to the master, the
  connections queued on it wait for the replacement (instead of being reset, which is
  what happens when the last holder of a reuseport socket closes it), and the replacement
  adopts the same index: affinity is stable across restarts and reloads.
- An index >= N (cannot happen here) would make the kernel fall back to its own hash.

Everything here is plain `socket` work: no Twisted, so the master can use it before fork().
The BPF program is data (`program(n)`), testable with the small interpreter `run_program`.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from dataclasses import dataclass, field

from .model import Address, Config, VHost

SO_ATTACH_REUSEPORT_CBPF = 51  # include/uapi/asm-generic/socket.h (not in Python's socket module)
SKF_NET_OFF = -0x100000  # include/uapi/linux/filter.h: loads relative to the network header
LISTEN_BACKLOG = 1024

# Classic BPF opcodes (include/uapi/linux/bpf_common.h).
BPF_LD, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = 0x00, 0x04, 0x05, 0x06, 0x07
BPF_W, BPF_B = 0x00, 0x10
BPF_ABS = 0x20
BPF_MUL, BPF_AND, BPF_RSH, BPF_MOD, BPF_XOR = 0x20, 0x50, 0x70, 0x90, 0xA0
BPF_JA, BPF_JEQ = 0x00, 0x10
BPF_K, BPF_X, BPF_A = 0x00, 0x08, 0x10
BPF_TAX = 0x00

# Knuth's multiplicative hash constant (2^32 / phi): spreads neighbouring addresses
# (10.0.0.1, 10.0.0.2, ...) over the workers instead of using their low bits alone.
HASH_MULTIPLIER = 0x9E3779B1
HASH_SHIFT = 16

Insn = tuple[int, int, int, int]  # (code, jt, jf, k) as in struct sock_filter


def _i(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> Insn:
    return (code, jt, jf, k & 0xFFFFFFFF)


def program(n: int) -> list[Insn]:
    """The classic BPF program returning ``hash(source address) % n``.

    ::

        ld  b [net+0]; and #0xf0; jeq #0x40 ? v4 : v6
        v4: ld w [net+12]; ja hash
        v6: ld w [net+8]; tax; ld w [net+12]; xor x; tax; ld w [net+16]; xor x; tax;
            ld w [net+20]; xor x
        hash: mul #0x9E3779B1; rsh #16; mod #n; ret a
    """
    if not 1 <= n <= 0xFFFF:
        raise ValueError(f"worker count {n} out of range 1..65535")
    v6 = [_i(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 8), _i(BPF_MISC | BPF_TAX)]
    for off in (12, 16, 20):
        v6 += [_i(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + off), _i(BPF_ALU | BPF_XOR | BPF_X)]
        if off != 20:
            v6.append(_i(BPF_MISC | BPF_TAX))
    return [
        _i(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF),
        _i(BPF_ALU | BPF_AND | BPF_K, 0xF0),
        _i(BPF_JMP | BPF_JEQ | BPF_K, 0x40, jt=0, jf=2),
        _i(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 12),
        _i(BPF_JMP | BPF_JA, len(v6)),
        *v6,
        _i(BPF_ALU | BPF_MUL | BPF_K, HASH_MULTIPLIER),
        _i(BPF_ALU | BPF_RSH | BPF_K, HASH_SHIFT),
        _i(BPF_ALU | BPF_MOD | BPF_K, n),
        _i(BPF_RET | BPF_A),
    ]


_ALU = {BPF_AND: lambda a, b: a & b, BPF_XOR: lambda a, b: a ^ b, BPF_MUL: lambda a, b: a * b,
        BPF_RSH: lambda a, b: a >> b, BPF_MOD: lambda a, b: a % b}


def run_program(prog: list[Insn], ip_header: bytes) -> int:
    """Interpret `prog` (only the opcodes `program` uses) on a packet's IP header.

    For tests: the kernel runs the real thing; this says what it must compute.
    """
    a = x = 0
    pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code in (BPF_LD | BPF_W | BPF_ABS, BPF_LD | BPF_B | BPF_ABS):
            off = (k - (SKF_NET_OFF & 0xFFFFFFFF))
            size = 4 if code & 0x18 == BPF_W else 1
            a = int.from_bytes(ip_header[off:off + size], "big")
        elif code == BPF_MISC | BPF_TAX:
            x = a
        elif code & 0x07 == BPF_ALU:
            operand = x if code & BPF_X else k
            a = _ALU[code & 0xF0](a, operand) & 0xFFFFFFFF
        elif code == BPF_JMP | BPF_JA:
            pc += k
        elif code == BPF_JMP | BPF_JEQ | BPF_K:
            pc += jt if a == k else jf
        elif code == BPF_RET | BPF_A:
            return a
        else:  # pragma: no cover - program() emits nothing else
            raise ValueError(f"opcode {code:#x} not interpreted")


def worker_for(ip: str, n: int) -> int:
    """The worker index a client address lands on (what the kernel computes)."""
    return run_program(program(n), pack_ip_header(ip))


def pack_ip_header(ip: str) -> bytes:
    """An IPv4 or IPv6 header stub with `ip` as the source address (for `run_program`)."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    return (struct.pack("!B11x4s4x", 0x45, packed) if len(packed) == 4
            else struct.pack("!B7x16s16x", 0x60, packed))


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def attach(sock: socket.socket, n: int) -> None:
    """Attach `program(n)` to the reuseport group of `sock` (bound and listening)."""
    insns = program(n)
    array = (_SockFilter * len(insns))(*[_SockFilter(*i) for i in insns])
    fprog = _SockFprog(len(insns), array)
    # setsockopt copies the program in; `array` only has to live during the call.
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(memoryview(fprog)))  # type: ignore[arg-type]
    del array


# --------------------------------------------------------------------------- listening sockets


def _host(address: Address) -> tuple[int, str]:
    host = "0.0.0.0" if address.is_wildcard else address.host
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), host


def vhosts_on(config: Config, address: Address) -> list[VHost]:
    """The vhosts served by the socket bound to `address`."""
    return [v for v in config.vhosts
            if v.listen == address or (address.is_wildcard and v.listen.port == address.port)]


def wants_affinity(config: Config, address: Address, workers: int) -> bool:
    """A reuseport group with affinity when several workers serve a TLS vhost whose
    `session_cache` is "shared"; "per-worker", "off" and plain HTTP share one socket."""
    return workers > 1 and any(v.tls is not None and v.tls.session_cache == "shared"
                               for v in vhosts_on(config, address))


def _probe_free(address: Address) -> None:
    """Raise OSError(EADDRINUSE) if something already listens on `address`.

    Sockets with SO_REUSEPORT of the same user silently *join* an existing group: a
    second tlsfront on the same address would share the traffic instead of failing.
    A socket without SO_REUSEPORT cannot bind where anything listens, so try one first.
    """
    family, host = _host(address)
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, address.port))
    finally:
        probe.close()


def bind_group(address: Address, n: int) -> list[socket.socket]:
    """N listening sockets on `address` in one reuseport group, affinity program attached."""
    _probe_free(address)
    family, host = _host(address)
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(family, socket.SOCK_STREAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((host, address.port))
            s.listen(LISTEN_BACKLOG)  # joins the group: index = position in `socks`
            s.setblocking(False)
        attach(socks[0], n)
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


@dataclass
class Listener:
    """One address's sockets, held by the master for its whole life.

    `affinity`: one socket per worker (index = worker index); otherwise one socket that
    every worker accepts on.
    """

    address: Address
    affinity: bool
    socks: list[socket.socket] = field(default_factory=list)

    def sock_for(self, index: int) -> socket.socket:
        return self.socks[index] if self.affinity else self.socks[0]

    def fds(self) -> list[int]:
        return [s.fileno() for s in self.socks]

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks = []


class BindFailure(Exception):
    """An address could not be bound; the message explains and gives the fix."""


def open_listener(address: Address, affinity: bool, workers: int) -> Listener:
    """Bind `address` (a group of `workers` sockets if `affinity`). BindFailure explains."""
    try:
        if affinity:
            return Listener(address, True, bind_group(address, workers))
        from .serve import bind
        return Listener(address, False, [bind(address)])
    except OSError as exc:
        try:
            from .errors import explain_bind_error
            message = explain_bind_error(address, exc)
        except ImportError:  # pragma: no cover
            message = f"cannot listen on {address}: {exc}"
        if exc.errno == errno.ENOPROTOOPT:
            message += (" (this kernel refused SO_ATTACH_REUSEPORT_CBPF; set session_cache = "
                        "\"per-worker\" or workers = 1)")
        raise BindFailure(message) from None


def open_listeners(config: Config, addresses: list[Address], workers: int,
                   keep: dict[Address, Listener] | None = None) -> tuple[dict[Address, Listener], list[str]]:
    """Listeners for `addresses`: those in `keep` are reused as they are, the others bound.

    Returns (listeners, notes): a kept listener whose kind (group or single socket) or
    worker count no longer matches the configuration keeps its sockets until a restart
    (rebinding would refuse connections), and a note says so. BindFailure closes every
    socket opened here and explains.
    """
    keep = keep or {}
    out: dict[Address, Listener] = {}
    notes: list[str] = []
    opened: list[Listener] = []
    try:
        for address in addresses:
            want = wants_affinity(config, address, workers)
            old = keep.get(address)
            if old is not None:
                if old.affinity != want or (old.affinity and len(old.socks) != workers):
                    notes.append(f"{address}: the socket layout ({_describe(old)}) stays until a restart; "
                                 f"the new configuration asks for "
                                 f"{'a group of ' + str(workers) if want else 'one shared socket'}")
                out[address] = old
                continue
            listener = open_listener(address, want, workers)
            opened.append(listener)
            out[address] = listener
    except BindFailure:
        for listener in opened:
            listener.close()
        raise
    return out, notes


def _describe(listener: Listener) -> str:
    return (f"a reuseport group of {len(listener.socks)} with affinity" if listener.affinity
            else "one shared socket")

