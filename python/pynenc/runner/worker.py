"""The worker: claims queued invocations from the store and runs them.

Several workers (processes, each with `concurrency` threads) share one store. A claim takes a
lease with a fencing token; running invocations renew it; an invocation whose worker died is
claimed again once its lease expired, or at once when the dead worker ran on this machine.
One thread of each worker claims, for every slot free at that moment in one commit, and hands
each claim to a slot's thread.
"""

from __future__ import annotations

import datetime
import queue
import signal
import threading
import time
import uuid
from types import FrameType
from typing import TYPE_CHECKING

from pynenc import checks
from pynenc import logging as logs
from pynenc._core import Claim
from pynenc.errors import (
    CorruptEntryError,
    InvalidArgumentError,
    LeaseLostError,
    NonDeterminismError,
    PynencError,
    StoreUnavailableError,
    WorkflowCancelledError,
)
from pynenc.invocation import describe_exception
from pynenc.runner import claims
from pynenc.runner.leases import now_ms
from pynenc.runner.owner import current_owner

if TYPE_CHECKING:
    from pynenc.app import Pynenc

__all__ = ["Worker"]

log = logs.logger("pynenc.worker")
store_log = logs.logger("pynenc.store")


def _when(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601, UTC."""
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(
        timespec="milliseconds"
    )


class Worker:
    """Runs queued invocations of `app` until stopped.

    Args:
        app: The app whose store and tasks to use.
        concurrency: How many invocations run at once (threads); 1 to 1024.
        grace_seconds: On SIGTERM/SIGINT, how long running invocations may take to finish
            before their leases are released for other workers; 0 to 86,400.
        idle_poll_seconds: Longest pause between claim attempts when the queue is empty;
            above 0, at most 60. On a store that sends change notices (PostgreSQL), an idle
            worker is woken as soon as work is enqueued, and this only bounds how late work
            that sends none (deferred work, expired leases) is seen.

    Raises:
        InvalidArgumentError: An option has the wrong type or is out of its range (nothing
            is started).
    """

    def __init__(
        self,
        app: Pynenc,
        *,
        concurrency: int = 1,
        grace_seconds: float = 30.0,
        idle_poll_seconds: float = 0.05,
    ) -> None:
        concurrency = checks.whole("concurrency", concurrency, least=1, most=checks.MAX_CONCURRENCY)
        grace_seconds = checks.seconds(
            "grace_seconds", grace_seconds, positive=False, most=checks.MAX_WAIT_SECONDS
        )
        idle_poll_seconds = checks.seconds(
            "idle_poll_seconds", idle_poll_seconds, positive=True, most=checks.MAX_IDLE_POLL_SECONDS
        )
        self.app = app
        self.concurrency = concurrency
        self.grace_seconds = grace_seconds
        self.idle_poll_seconds = idle_poll_seconds
        self._stopping = threading.Event()
        self._running: dict[bytes, int] = {}
        self._threads: set[int] = set()
        self._lock = threading.Lock()
        #: One permit per slot not running (or about to run) a claim.
        self._free = threading.Semaphore(concurrency)
        #: Claims taken for free slots, with when their claim was sent; None stops a slot.
        self._ready: queue.SimpleQueue[tuple[Claim, float] | None] = queue.SimpleQueue()
        self._closed = False  # set once stopping: claims are no longer handed out
        self.completed = 0
        #: The store failure that stopped the worker (its server stayed unreachable).
        self.fatal: StoreUnavailableError | None = None

    def stop(self) -> None:
        """Stop claiming new work; running invocations finish (within the grace period)."""
        self._stopping.set()

    def run(self) -> None:
        """Work until `stop()` or SIGTERM/SIGINT; then wait out the grace period and release
        the leases of whatever is still running.

        Raises:
            StoreUnavailableError: The store stayed unreachable for longer than the app's
                `store_unavailable_seconds`; the worker stopped claiming and finished what it
                could (its other invocations are taken over once their leases expire).
        """
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        owner = current_owner()
        log.info(
            "worker %s started: app %s, store %s, concurrency %d",
            owner,
            self.app.config.app_id,
            self.app.store.location(),
            self.concurrency,
        )
        threads = [
            threading.Thread(target=self._work, name=f"pynenc-worker-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        self._threads = {t.ident for t in threads if t.ident is not None}
        claimer = threading.Thread(target=self._claim, name="pynenc-worker-claims", daemon=True)
        claimer.start()
        last_sweep = 0.0
        while not self._stopping.wait(0.2):
            if time.monotonic() - last_sweep > 1.0:
                last_sweep = time.monotonic()
                self._sweep()
        deadline = time.monotonic() + self.grace_seconds
        claimer.join(max(0.0, deadline - time.monotonic()))
        self._give_back_unstarted()
        for _ in threads:
            self._ready.put(None)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._release_unfinished()
        log.info("worker %s stopped after %d invocations", owner, self.completed)
        if self.fatal is not None:
            raise self.fatal

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing running invocations (grace %.0f s)",
            signal.Signals(signum).name,
            self.grace_seconds,
        )
        self.stop()

    def _sweep(self) -> None:
        try:
            released = self.app.release_dead_leases()
        except PynencError as exc:
            log.error("cannot sweep leases of dead workers: %s", exc)
            return
        if released:
            log.info("released %d lease(s) of dead workers on this machine", released)

    def _claim(self) -> None:
        """Claim work for the free slots, in one commit for all of them, until stopped."""
        store = self.app.store
        owner = current_owner().encode()
        lease_ms = self.app._lease_keeper().lease_ms
        pause = 0.001
        while not self._stopping.is_set():
            if not self._free.acquire(timeout=0.2):
                continue  # every slot busy
            free = 1
            while free < self.concurrency and self._free.acquire(blocking=False):
                free += 1
            sent = time.monotonic()
            # Taken before the claim: work enqueued after it wakes the wait below at once.
            ticket = store.notice_ticket()
            try:
                taken = store.claim_many(owner, lease_ms, now_ms(), free)
            except StoreUnavailableError as exc:
                log.critical("stopping: %s", exc)
                self.fatal = exc
                self.stop()
                return
            except PynencError as exc:
                log.error("claim failed: %s", exc)
                taken = []
                self._stopping.wait(1.0)
            with self._lock:
                closed = self._closed
                if not closed:
                    for claim in taken:
                        self._ready.put((claim, sent))
            if closed:  # stopped meanwhile: nothing new starts
                for claim in taken:
                    self._release(claim.invocation, claim.token)
                return
            for _ in range(free - len(taken)):
                self._free.release()
            if taken:
                pause = 0.001
            elif ticket is None:
                self._stopping.wait(pause)
                pause = min(pause * 2, self.idle_poll_seconds)
            else:
                self._wait_for_work(ticket)

    def _work(self) -> None:
        """A slot: run the claims handed to it until told to stop."""
        while (item := self._ready.get()) is not None:
            claim, sent = item
            try:
                self._execute(claim.invocation, claim.token, claim.taken_over, sent)
            finally:
                self._free.release()

    def _give_back_unstarted(self) -> None:
        """Release the claims taken for slots that stopping left unstarted; a claim that
        comes back later is released by the claimer."""
        with self._lock:
            self._closed = True
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._release(item[0].invocation, item[0].token)

    def _wait_for_work(self, ticket: int) -> None:
        """Wait for a notice that work was enqueued (or released) after `ticket`, at most
        `idle_poll_seconds` (the safety net: deferred work and expired leases send no notice),
        in slices so that `stop()` is heard."""
        deadline = time.monotonic() + self.idle_poll_seconds
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self.app.store.wait_notice(ticket, min(left, 0.2)):
                return

    def _execute(self, invocation_id: bytes, token: int, taken_over: bool, sent: float) -> None:
        # Every line logged while this invocation is handled carries its ids.
        with logs.handling(logs.subject_of_id(invocation_id)):
            try:
                record = self.app._load_record(invocation_id)
            except CorruptEntryError as exc:
                self._set_aside(invocation_id, token, exc)
                return
            if record is None:
                self._run_claimed(invocation_id, token, taken_over, "?", sent)
                return
            with logs.handling(logs.subject_of(record)):
                self._run_claimed(invocation_id, token, taken_over, record.task_id, sent)

    def _run_claimed(
        self, invocation_id: bytes, token: int, taken_over: bool, task: str, sent: float
    ) -> None:
        if task == "?" or self._knows(task):
            # (An unknown task gets one line, below, once `run_claimed` has counted it.)
            log.info("running %s (token %d)", task, token)
        with self._lock:
            self._running[invocation_id] = token
        try:
            due = claims.run_claimed(
                self.app, invocation_id, token, taken_over=taken_over, claimed_at=sent
            )
            if due is None:
                self.completed += 1
                log.info("finished %s", task)
            else:
                log.info("suspended %s until %s", task, _when(due))
        except claims.UnknownTaskError as exc:
            # Deferred (or parked) by `run_claimed`: one line, never a traceback.
            log.error("%s", exc)
        except LeaseLostError:
            log.warning("lease lost on %s: another worker owns it now", task)
        except NonDeterminismError as exc:
            # Left as it was and deferred for a lease time: a worker tries it again then
            # (resuming once the code is fixed) instead of every worker failing on it at once.
            log.error("%s (tried again in %.0f s)", exc, self.app._lease_keeper().lease_ms / 1000)
        except WorkflowCancelledError as exc:
            log.warning("stopped %s: %s", task, exc)
        except Exception:
            # `run_claimed` has given the lease back.
            log.exception("engine failure running %s", task)
        except BaseException as exc:  # noqa: BLE001 - the worker thread must live on
            # An interruption inside a side effect's function (the task's own `SystemExit`
            # or `KeyboardInterrupt` is its failure, stored by `run`): nothing of it was
            # recorded; `run_claimed` gave the lease back, to run again after a lease time.
            log.error(
                "%s interrupted by %s inside a workflow operation (a side effect's function): "
                "nothing of it recorded, left to resume (tried again in %.0f s)",
                task,
                describe_exception(exc),
                self.app._lease_keeper().lease_ms / 1000,
            )
        finally:
            with self._lock:
                self._running.pop(invocation_id, None)

    def _set_aside(self, invocation_id: bytes, token: int, exc: CorruptEntryError) -> None:
        """A claimed invocation whose record is malformed: one line on `pynenc.store`, and it
        is deferred for a lease time (left in the queue as it is, nothing written over it)."""
        lease_ms = self.app._lease_keeper().lease_ms
        store_log.error("worker: %s (tried again in %.0f s)", exc, lease_ms / 1000)
        try:
            self.app.store.defer(invocation_id, token, self.app.store.now_ms() + lease_ms)
        except PynencError:
            pass  # taken over meanwhile: nothing of ours to give back

    def _knows(self, task_id: str) -> bool:
        try:
            self.app.get_task(task_id)
        except InvalidArgumentError:
            return False
        return True

    def _release(self, invocation_id: bytes, token: int) -> None:
        try:
            self.app.store.release(invocation_id, token)
        except PynencError:
            pass  # already taken over: nothing of ours to release

    def _release_unfinished(self) -> None:
        if self.fatal is not None:
            return  # the store is unreachable: the leases run out by themselves
        with self._lock:
            unfinished = dict(self._running)
        # Children its threads claimed while a parent waited on them are held by the lease
        # keeper (shared by every worker and recovery of this process: only its own count).
        unfinished |= self.app._lease_keeper().held_by(self._threads)
        keeper = self.app._lease_keeper()
        for invocation_id, token in unfinished.items():
            subject = keeper.subject(invocation_id) or logs.subject_of_id(invocation_id)
            log.warning(
                "%s still running after the grace period: lease released",
                subject[2] or f"invocation {uuid.UUID(bytes=invocation_id)}",
                extra=logs.extra(subject),
            )
            self._release(invocation_id, token)
