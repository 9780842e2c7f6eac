"""Events, not lines: the joiner's state machine, and that any cut of the input into blocks gives the same events."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from tlslog.classify import CONT, EVENT, HEAD, Group, Joiner, Record


def run(records: list[Record], cuts: list[int] = ()) -> Counter:
    """Feed records in blocks cut at ``cuts``, merge the blocks in order, finish; count (category, first pos)."""
    events: Counter = Counter()

    def emit(g: Group) -> None:
        events[(g.category, g.first.pos)] += 1

    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(records))), len(records)]
    joiners = []
    for a, b in zip(bounds, bounds[1:]):
        j = Joiner(emit)
        for rec in records[a:b]:
            if rec.role == EVENT:
                emit(Group.start(rec))
            else:
                j.feed(rec)
        joiners.append(j)
    first = joiners[0] if joiners else Joiner(emit)
    for later in joiners[1:]:
        first.merge(later)
    first.finish()
    return events


def H(kind, cat, key=1, t=0.0, pos=0, strong=False, detail=""):
    return Record(HEAD, cat, strong, key, t, None, pos, b"", kind, detail)


def C(cat, key=1, t=None, pos=0, strong=True):
    return Record(CONT, cat, strong, key, t, None, pos, b"", "cont")


def cats(events: Counter) -> Counter:
    out: Counter = Counter()
    for (cat, _pos), n in events.items():
        out[cat] += n
    return out


def test_ah02008_with_its_library_errors_is_one_event():
    recs = [H("conn", "other_tls_error", pos=1), C("client_rejected_cert", pos=2), C("other_tls_error", pos=3)]
    assert cats(run(recs)) == {"client_rejected_cert": 1}


def test_verification_error_then_ah02008_is_one_event():
    recs = [H("pre", "client_cert_invalid", strong=True, pos=1), H("conn", "other_tls_error", pos=2),
            C("client_cert_invalid", pos=3)]
    assert cats(run(recs)) == {"client_cert_invalid": 1}


def test_two_connections_on_one_thread_are_two_events():
    recs = [H("conn", "other_tls_error", pos=1), C("no_shared_cipher", pos=2),
            H("conn", "other_tls_error", pos=3), C("protocol_mismatch", pos=4)]
    assert cats(run(recs)) == {"no_shared_cipher": 1, "protocol_mismatch": 1}


def test_interleaved_threads_join_by_key():
    recs = [H("conn", "other_tls_error", key="a", pos=1), H("conn", "other_tls_error", key="b", pos=2),
            C("protocol_mismatch", key="b", pos=3), C("client_rejected_cert", key="a", pos=4)]
    assert cats(run(recs)) == {"protocol_mismatch": 1, "client_rejected_cert": 1}


def test_startup_failure_lines_are_one_event_but_two_causes_are_two():
    # AH02580 + library errors + AH02312 + AH02564 (Apache 2.4 wrong pass phrase, corpus apache24-startup)
    pp = [H("startup", "passphrase_failure", strong=True, pos=1), C("other_tls_error", pos=2, strong=False),
          H("startup", None, pos=3), H("startup", "passphrase_failure", pos=4)]
    assert cats(run(pp)) == {"passphrase_failure": 1}
    # a 2.0 log without pids: a mutex failure then a PRNG failure
    two = [H("startup", "mutex_permission_denied", key=None, strong=True, pos=1), C(None, key=None, pos=2),
           H("startup", "prng_not_seeded", key=None, strong=True, t=1.0, pos=3), C("prng_not_seeded", key=None, pos=4)]
    assert cats(run(two)) == {"mutex_permission_denied": 1, "prng_not_seeded": 1}


def test_proxy_retries_are_one_failed_request():
    recs = [H("proxy_try", "backend_unavailable", pos=1), H("proxy_try", "backend_unavailable", pos=2),
            C(None, pos=3), H("proxy_fail", "backend_unavailable", pos=4),
            H("proxy_try", "backend_unavailable", t=1.0, pos=5), H("proxy_fail", "backend_unavailable", t=1.0, pos=6)]
    # a second request after AH01114 is a second event: proxy_fail never merges into anything but proxy_try
    assert cats(run(recs)) == {"backend_unavailable": 2}


def test_orphan_continuation_stands_alone_and_unknown_is_dropped():
    assert cats(run([C("prng_not_seeded", pos=1)])) == {"prng_not_seeded": 1}
    assert cats(run([C(None, pos=1)])) == {}


def test_errors_after_the_handshake_count_only_with_a_definite_cause():
    # AH02008 + no shared cipher, later on the same thread AH01992 + unexpected eof (a client closing without
    # close_notify): one event; the eof line must not become an event of its own nor change the first one
    recs = [H("conn", "other_tls_error", pos=1), C("no_shared_cipher", pos=2),
            H("late", None, t=30.0, pos=3), C("handshake_eof_or_reset", pos=4)]
    assert cats(run(recs)) == {"no_shared_cipher": 1}
    late_alert = [H("late", None, pos=1), C("client_rejected_cert", pos=2)]
    assert cats(run(late_alert)) == {"client_rejected_cert": 1}
    assert cats(run([H("late", None, pos=1)])) == {}


def test_continuation_far_in_time_does_not_join():
    recs = [H("conn", "other_tls_error", t=0.0, pos=1), C("no_shared_cipher", t=60.0, pos=2)]
    assert cats(run(recs)) == {"other_tls_error": 1, "no_shared_cipher": 1}


# -- property: any split gives the same result ------------------------------------------------------------------

KINDS = ["conn", "pre", "startup", "proxy_try", "proxy_fail", "ngx_upstream", "solo", "late"]
CATS = [None, "other_tls_error", "client_rejected_cert", "no_shared_cipher", "passphrase_failure",
        "handshake_eof_or_reset"]


@st.composite
def record_lists(draw):
    n = draw(st.integers(0, 40))
    out = []
    t = 0.0
    for pos in range(n):
        t += draw(st.sampled_from([0.0, 0.0, 1.0, 10.0]))
        role = draw(st.sampled_from([HEAD, HEAD, CONT, EVENT]))
        key = draw(st.sampled_from([1, 2, None]))
        cat = draw(st.sampled_from(CATS))
        strong = draw(st.booleans())
        if role == HEAD:
            out.append(Record(HEAD, cat, strong, key, t, None, pos, b"", draw(st.sampled_from(KINDS)),
                              draw(st.sampled_from(["", "GET /"]))))
        elif role == CONT:
            out.append(Record(CONT, cat, strong, key, draw(st.sampled_from([None, t])), None, pos, b"", "cont"))
        else:
            out.append(Record(EVENT, cat or "other_tls_error", True, key, t, None, pos, b""))
    return out


@settings(max_examples=400, deadline=None)
@given(recs=record_lists(), cuts=st.lists(st.integers(0, 40), max_size=6))
def test_any_split_gives_the_same_events(recs, cuts):
    assert run(recs, cuts) == run(recs)


def test_records_groups_and_key_states_pickle_to_equal_objects_sharing_what_they_shared():
    """--jobs and Dask send block states back by pickle; the compact __reduce__ of Record, Group and KeyState must
    give equal objects, and one Record that is a group's first line, its last head and a prefix entry stays one."""
    import pickle

    from tlslog.classify import KeyState

    rec = Record(HEAD, "no_shared_cipher", True, b"1:2", 1.5, "www:443", 10, b"line", "conn", "d", 3)
    state = KeyState([rec], True, Group(rec, rec, "no_shared_cipher", None, "www:443"), rec)
    back = pickle.loads(pickle.dumps(state))
    assert back == state
    assert back.open.first is back.open.last_head is back.prefix[0] is back.prefix_last_head
