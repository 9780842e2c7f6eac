"""What ``process_chunks`` makes of some bytes with one format, as one comparable tuple: the tests of the Apache
2.4 fast paths (test_fastpath, test_units) hold it equal between the fast loops and the generic one."""

from __future__ import annotations

from tlslog.classify import Joiner
from tlslog.scan import _emitter, _finish_ctx, _new_ctx, process_chunks
from tlslog.store import FileStats, Store


def outcome(fmt, data: bytes | list[bytes], block_size: int) -> tuple:
    """Events, first/last times, examples, line counts and warnings, plus the open joiner state (what a ``--jobs``
    range or ``follow`` hands on) and the store before the end closed it. ``data``: one chunk, or a list of them."""
    store = Store()
    stats = FileStats(0, "x", fmt.name)
    store.files[0] = stats
    joiner = Joiner(_emitter(store, {0: (stats, fmt.source)}))
    ctx = _new_ctx(0, "UTC")
    warnings: list[str] = []
    chunks = data if isinstance(data, list) else [data]
    process_chunks(iter(chunks), fmt, stats, store, joiner, ctx, warn=warnings.append, block_size=block_size)
    open_state = dict(joiner.keys)  # what a range or follow hands on, before the end closes it
    before_finish = (dict(store.events), dict(store.first), dict(store.last), dict(store.examples), stats.events)
    joiner.finish()
    _finish_ctx(ctx, store, stats, fmt.source)
    assert not ctx.pending  # every pending group was handed to the joiner at the end of process_chunks
    return (open_state, before_finish, dict(store.events), store.first, store.last, store.examples,
            stats.lines, stats.unparsed_lines, stats.events, warnings)
