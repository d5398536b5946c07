"""Turn-taking between archive workers: 档号 are reserved batch by batch, in source order.

Workers read, check and build their batches at the same time, but 件号 must follow the source (batch
0's vouchers before batch 1's) and stay gap-free. So the short step that reserves 档号 is taken in
turn: batch k reserves only after batch k-1 has, whichever worker got there first. A batch that
fails still passes its turn on, and an aborted step wakes every waiter, so nobody waits forever.
"""

from __future__ import annotations

from multiprocessing.context import BaseContext
from types import TracebackType

POLL_S = 1.0  # how often a waiting worker looks whether the step was aborted


class ReservationAborted(RuntimeError):
    pass


class ReservationTurns:
    """Shared by the forked workers of one archive step (created before the fork)."""

    def __init__(self, mp: BaseContext) -> None:
        self._next = mp.Value("i", 0, lock=False)  # index of the batch whose turn it is
        self._aborted = mp.Value("b", 0, lock=False)
        self._cond = mp.Condition()

    def wait_for(self, index: int) -> None:
        with self._cond:
            while self._next.value != index:
                if self._aborted.value:
                    raise ReservationAborted(f"archive step aborted while batch {index} waited for its turn")
                self._cond.wait(POLL_S)

    def pass_on(self, index: int) -> None:
        with self._cond:
            self._next.value = index + 1
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._aborted.value = 1
            self._cond.notify_all()


class Turn:
    """One batch's turn: `with turn:` holds it while reserving; `done()` passes it on exactly once."""

    def __init__(self, turns: ReservationTurns, index: int) -> None:
        self.turns, self.index = turns, index
        self._held = self._passed = False

    def __enter__(self) -> Turn:
        if not self._held:
            self.turns.wait_for(self.index)
            self._held = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.done()

    def done(self) -> None:
        if self._passed:
            return
        self._passed = True
        try:
            self.__enter__()  # a batch that failed before reserving still waits for its turn, then passes it
        except ReservationAborted:
            return  # the step is being torn down; whatever failed first is the error worth reporting
        self.turns.pass_on(self.index)
