"""Leases this process holds on queued invocations, renewed from one background thread."""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING

from pynenc import logging as logs
from pynenc.errors import LeaseLostError, StoreError

if TYPE_CHECKING:
    from pynenc._core import Store

__all__ = ["LeaseKeeper", "now_ms"]

log = logs.logger("pynenc.leases")


def now_ms() -> int:
    """Wall-clock milliseconds: leases are compared across processes and machines."""
    return time.time_ns() // 1_000_000


class LeaseKeeper:
    """Renews every lease this process holds, every third of the lease time.

    A lease that cannot be renewed because another worker took the invocation over is
    dropped; the execution holding it finds out at its next (fenced) write, or sooner, from
    `confirm`, before it runs the task's code or a side effect's function.

    Each lease also has a local clock: when the request of its last claim or renewal the store
    accepted was sent (monotonic time). The store grants a lease after that request arrives, so
    it holds for at least the lease time from then, whatever the clocks of the store and this
    machine say; past two thirds of it (a renewal answered late, a claim whose answer was held
    up by the network, the process frozen), `confirm` renews it before anything runs.
    """

    def __init__(self, store: Store, lease_seconds: float) -> None:
        self._store = store
        self.lease_ms = int(lease_seconds * 1000)
        self._held: dict[bytes, int] = {}
        self._holders: dict[bytes, int] = {}  # invocation id -> ident of the thread holding it
        self._subjects: dict[bytes, logs.Subject] = {}  # what its lines name (the holder's)
        self._confirmed: dict[bytes, float] = {}  # invocation id -> monotonic send time
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, invocation_id: bytes, token: int, claimed_at: float | None = None) -> None:
        """Keep renewing this lease until `drop`. `claimed_at`: when the claim that took it
        was sent (`time.monotonic()`); now when not given. Its log lines carry the ids the
        calling thread is handling now (`pynenc.logging`)."""
        with self._lock:
            self._held[invocation_id] = token
            self._holders[invocation_id] = threading.get_ident()
            self._subjects[invocation_id] = logs.current()
            self._confirmed[invocation_id] = time.monotonic() if claimed_at is None else claimed_at
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._renew_forever, name="pynenc-lease-keeper", daemon=True
                )
                self._thread.start()

    def drop(self, invocation_id: bytes) -> None:
        """Stop renewing this lease."""
        with self._lock:
            self._held.pop(invocation_id, None)
            self._holders.pop(invocation_id, None)
            self._subjects.pop(invocation_id, None)
            self._confirmed.pop(invocation_id, None)

    def subject(self, invocation_id: bytes) -> logs.Subject | None:
        """The ids the lines about this held lease carry, or None when it is not held."""
        with self._lock:
            return self._subjects.get(invocation_id)

    def confirm(self, invocation_id: bytes, token: int) -> None:
        """Return if the lease held with `token` surely lasts a third of the lease time more
        (by the local clock above); otherwise renew it first.

        Raises:
            LeaseLostError: Another worker holds it now: nothing of this run may go on.
            StoreError: The store could not be asked (the run cannot know it still owns it).
        """
        with self._lock:
            confirmed = self._confirmed.get(invocation_id)
            current = self._held.get(invocation_id) == token
        if current and confirmed is not None:
            if time.monotonic() - confirmed < self.lease_ms * 2 / 3000:
                return
        sent = time.monotonic()
        self._store.renew(invocation_id, token, self.lease_ms, now_ms())
        self._renewed(invocation_id, token, sent)

    def _renewed(self, invocation_id: bytes, token: int, sent: float) -> None:
        with self._lock:
            if self._held.get(invocation_id) == token:
                previous = self._confirmed.get(invocation_id, sent)
                self._confirmed[invocation_id] = max(previous, sent)

    def held(self) -> dict[bytes, int]:
        """The leases held now: invocation id → token."""
        with self._lock:
            return dict(self._held)

    def held_by(self, threads: set[int]) -> dict[bytes, int]:
        """The leases held now by these threads (by `threading.get_ident()`)."""
        with self._lock:
            return {i: t for i, t in self._held.items() if self._holders.get(i) in threads}

    def _renew_forever(self) -> None:
        while True:
            self._wake.wait(self.lease_ms / 3000)
            for invocation_id, token in self.held().items():
                try:
                    sent = time.monotonic()
                    self._store.renew(invocation_id, token, self.lease_ms, now_ms())
                    self._renewed(invocation_id, token, sent)
                except LeaseLostError:
                    about = self._extra(invocation_id)
                    self.drop(invocation_id)
                    log.warning(
                        "lease lost on invocation %s", uuid.UUID(bytes=invocation_id), extra=about
                    )
                except StoreError as exc:  # keep trying: the lease may still be saved in time
                    log.error(
                        "cannot renew lease on %s: %s",
                        uuid.UUID(bytes=invocation_id),
                        exc,
                        extra=self._extra(invocation_id),
                    )

    def _extra(self, invocation_id: bytes) -> dict[str, str | None]:
        return logs.extra(self.subject(invocation_id) or logs.subject_of_id(invocation_id))
