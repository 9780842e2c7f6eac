"""Records -> events: one failed connection (or one failed startup) is one event.

Theory of operation
-------------------
Decoders turn a candidate line into a :class:`Record` with a *role*:

``EVENT``  the line alone is one event (an nginx ``SSL_do_handshake() failed`` line, a HAProxy 503).
``HEAD``   the line opens a *group* (Apache's ``AH02008: SSL library error 1 in handshake``) or joins the open group of
           the same key when :data:`MERGES` allows it (``AH02039`` verification error followed by ``AH02008`` for the
           same connection; the startup failure lines of one pid; nginx trying the next upstream address).
``CONT``   the line continues the open group of its key (Apache's ``SSL Library Error:`` lines, ``AH00959``) and may
           refine its category; without an open group it stands alone (if it names a category) or is dropped.

The key is what the server logs to tie lines together: Apache's (pid, tid), nginx's (pid, connection). A group closes
when the next HEAD of its key does not merge, or at the end of the input; then it becomes one event. Its category is
the first *strong* category among its records (a reason code from OpenSSL, a definite message), else the first weak
one (AH02008 alone says "some handshake error"), else ``other_tls_error``. Continuations join only within
:data:`WINDOW_SECONDS` of the group's last head (mod_ssl writes them in the same microsecond).

Blocks and merging
------------------
A file may be cut into blocks processed apart (``--jobs``). Every per-key result must then be mergeable so that the
joined result equals one pass. A block does not know the group that was open for a key when it started, so per key it
keeps a *prefix*: its records up to the first HEAD that provably cannot merge into whatever came before (a HEAD that
can never merge, or a HEAD that does not merge into the group the prefix itself started). Merging block A then B
replays B's prefix on A's open group with the same :func:`step` function that a single pass uses, so results are
identical by construction (a hypothesis test checks every split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable

EVENT, HEAD, CONT = 0, 1, 2

#: continuations and merging heads join a group only this close (seconds) to its last head
WINDOW_SECONDS = 5.0

#: (kind of the group's last head, kind of the new head) pairs that join one group
MERGES: frozenset[tuple[str, str]] = frozenset(
    {
        ("pre", "conn"),  # AH02039 / AH01382 handshake timeout, then AH02008 / AH02007 for the same connection
        ("startup", "startup"),  # one startup failure logs several lines before AH00016
        ("proxy_try", "proxy_try"),  # AH00957 once per backend address tried
        ("proxy_try", "proxy_fail"),  # ... then AH01114 for the request
        ("ngx_upstream", "ngx_upstream"),  # nginx tries the next upstream for the same request
    }
)
#: categories that make a post-handshake ("late") error an event
LATE_CAUSES: frozenset[str] = frozenset({"client_rejected_cert", "protocol_mismatch", "no_shared_cipher",
                                         "client_cert_missing", "client_cert_invalid", "plain_http_on_tls_port"})
#: kinds that may merge into an earlier group (so a block cannot decide them alone)
MAY_MERGE: frozenset[str] = frozenset(second for _, second in MERGES)


@dataclass(slots=True)
class Record:
    """One decoded candidate line. ``pos`` orders lines within a file (byte offset of the line start)."""

    role: int
    category: str | None
    strong: bool
    key: Hashable = None
    time: float | None = None
    vhost: str | None = None
    pos: int = 0
    line: bytes = b""
    kind: str = "solo"
    detail: str = ""
    src: int = 0  # index of the input file (set by the scan; a rotated set is one stream of several files)

    def __reduce__(self):
        # a plain tuple of the fields: --jobs and Dask send every open group and block prefix back to the merging
        # process; the default pickling of a slots dataclass (a dict of slots per object) takes 3 times longer
        return Record, (self.role, self.category, self.strong, self.key, self.time, self.vhost, self.pos, self.line,
                        self.kind, self.detail, self.src)


@dataclass(slots=True)
class Group:
    """An open group of records about one connection or one startup."""

    first: Record
    last_head: Record
    strong: str | None = None
    weak: str | None = None
    vhost: str | None = None

    @classmethod
    def start(cls, rec: Record) -> "Group":
        g = cls(rec, rec)
        g.absorb(rec)
        return g

    def __reduce__(self):  # see Record.__reduce__
        return Group, (self.first, self.last_head, self.strong, self.weak, self.vhost)

    def absorb(self, rec: Record) -> None:
        if rec.category is not None:
            if rec.strong:
                if self.strong is None:
                    self.strong = rec.category
            elif self.weak is None:
                self.weak = rec.category
        if self.vhost is None and rec.vhost:
            self.vhost = rec.vhost

    @property
    def category(self) -> str:
        return self.strong or self.weak or "other_tls_error"

    @property
    def counts(self) -> bool:
        """Whether this group is an event. A group opened by an error AFTER the handshake (mod_ssl's AH01991-
        AH01994 "SSL input filter read failed", "SSL library error 1 reading data") is only one when OpenSSL names
        a definite cause, e.g. a client rejecting the certificate late; a peer closing without close_notify
        ("unexpected eof while reading") is ordinary traffic, not a failed connection."""
        return self.first.kind != "late" or self.strong in LATE_CAUSES


def _near(a: float | None, b: float | None) -> bool:
    return a is None or b is None or abs(a - b) <= WINDOW_SECONDS


def merges(last_head: Record, rec: Record) -> bool:
    if (last_head.kind, rec.kind) not in MERGES or not _near(last_head.time, rec.time):
        return False
    if rec.kind == "ngx_upstream":
        return last_head.detail == rec.detail
    if rec.kind == "startup":
        # one startup failure: its follow-up lines (AH02312, AH02564, AH01874 ...) are weak or say the same thing;
        # a second definite cause (a PRNG failure after a mutex failure in a 2.0 log without pids) is another event
        return not rec.strong or rec.category == last_head.category
    return True


Emit = Callable[[Group], None]


def step(open_group: Group | None, rec: Record, emit: Emit) -> Group | None:
    """Feed one HEAD or CONT record to the group open for its key; return the group open afterwards."""
    if rec.role == HEAD:
        if open_group is not None and merges(open_group.last_head, rec):
            open_group.last_head = rec
            open_group.absorb(rec)
            return open_group
        if open_group is not None and open_group.counts:
            emit(open_group)
        return Group.start(rec)
    # CONT
    if open_group is not None and _near(open_group.last_head.time, rec.time):
        open_group.absorb(rec)
        return open_group
    if rec.category is not None:  # an orphan continuation that still names a cause: one event on its own
        emit(Group.start(rec))
    return open_group


def _close(state: Group | None, emit: Emit) -> None:
    if state is not None and state.counts:
        emit(state)


@dataclass(slots=True)
class KeyState:
    """Per-key result of a block: given the group P open before it, replay ``prefix`` on P giving S; if
    ``resolved``, S is closed (emitted) and ``open`` is the group open at the end; else S is."""

    prefix: list[Record] = field(default_factory=list)
    resolved: bool = False
    open: Group | None = None
    prefix_last_head: Record | None = None

    def __reduce__(self):  # see Record.__reduce__
        return KeyState, (self.prefix, self.resolved, self.open, self.prefix_last_head)


def replay(state: Group | None, records: list[Record], emit: Emit) -> Group | None:
    for rec in records:
        state = step(state, rec, emit)
    return state


class Joiner:
    """Joins HEAD/CONT records of one file (or of one block of a file) into events; mergeable (see module doc)."""

    __slots__ = ("keys", "emit")

    def __init__(self, emit: Emit) -> None:
        self.keys: dict[Hashable, KeyState] = {}
        self.emit = emit

    def feed(self, rec: Record) -> None:
        ks = self.keys.get(rec.key)
        if ks is None:
            ks = self.keys[rec.key] = KeyState()
        if ks.resolved:
            ks.open = step(ks.open, rec, self.emit)
            return
        if rec.role == HEAD:
            last = ks.prefix_last_head
            independent = rec.kind not in MAY_MERGE if last is None else not merges(last, rec)
            if independent:
                ks.resolved = True
                ks.open = Group.start(rec)
                return
            ks.prefix_last_head = rec
        ks.prefix.append(rec)

    def merge(self, later: "Joiner") -> None:
        """Append the result of the block that follows this one (its events were emitted into its own store;
        the groups completed here are emitted through ``self.emit``)."""
        for key, kb in later.keys.items():
            ka = self.keys.get(key)
            if ka is None:
                self.keys[key] = kb
                continue
            if not ka.resolved:
                ka.prefix.extend(kb.prefix)
                if kb.resolved:
                    ka.resolved, ka.open = True, kb.open
                ka.prefix_last_head = kb.prefix_last_head or ka.prefix_last_head
                continue
            state = replay(ka.open, kb.prefix, self.emit)
            if kb.resolved:
                _close(state, self.emit)
                state = kb.open
            ka.open = state

    def finish(self) -> None:
        """End of the file: every open group becomes an event."""
        for ks in self.keys.values():
            state = replay(None, ks.prefix, self.emit)
            if ks.resolved:
                _close(state, self.emit)
                state = ks.open
            _close(state, self.emit)
        self.keys.clear()
