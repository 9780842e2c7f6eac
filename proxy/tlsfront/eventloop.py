"""The workers' event loop: Twisted's epoll reactor without a logging context per event.

`EPollReactor.doPoll` hands every ready descriptor to `log.callWithLogger`,
which asks the selectable for its `logPrefix()` and runs the handler inside
`context.call({"system": prefix}, ...)` (a thread-local lookup, a dict copy,
a push and a pop). That context only names the "system" of Twisted legacy
log events emitted meanwhile; tlsfront writes its own logs (logfiles.py) and
`_doReadOrWrite` already catches and logs what a handler raises. Measured in
docs/benchmarks.md ("The event loop"): the wrapper was about 3% of a keep-alive
worker's samples.

Grammar: `install()` before anything imports `twisted.internet.reactor`
(worker.run does it first thing after the fork); returns the reactor.
"""

from __future__ import annotations

import errno

from twisted.internet import epollreactor
from twisted.internet.main import installReactor


class Reactor(epollreactor.EPollReactor):
    """EPollReactor whose doPoll calls `_doReadOrWrite` directly."""

    def doPoll(self, timeout):
        if timeout is None:
            timeout = -1  # wait indefinitely
        try:
            ready = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in ready:
            selectable = selectables.get(fd)
            if selectable is not None:  # gone since epoll_wait returned (closed by an earlier handler)
                handle(selectable, fd, event)

    doIteration = doPoll


def install() -> Reactor:
    reactor = Reactor()
    installReactor(reactor)
    return reactor
