"""Preemption: SIGTERM becomes "save at the next step every process agrees on, then stop".

Cloud TPU, GKE and most batch schedulers send SIGTERM some time before they evict a job.
With several processes the notice may reach only one host, and the hosts must still save
the same step (an Orbax save is collective). JAX's preemption sync service does exactly
that once `jax.distributed` is initialized: it catches SIGTERM itself, tells the other
hosts, and `reached_preemption_sync_point(step)` (through Orbax's `reached_preemption`)
turns True on all of them at the same step. A single process has no such service, so
this module installs a plain SIGTERM handler that sets a flag checked after each step.
"""
from __future__ import annotations

import logging
import signal
import threading

import jax

log = logging.getLogger(__name__)


class SigtermNotice:
    """``with SigtermNotice() as notice: ... if notice.reached(step, manager): save; stop``.

    Must wrap the whole loop and be asked after every step: JAX's protocol counts steps.
    """

    def __init__(self):
        self._received = threading.Event()
        self._previous = None
        self._jax_syncs = False

    def __enter__(self) -> "SigtermNotice":
        # Several processes: JAX's service owns SIGTERM (a Python handler would replace its
        # C handler and the other hosts would never hear of the notice).
        self._jax_syncs = jax.process_count() > 1
        if not self._jax_syncs and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum, frame) -> None:
        del signum, frame
        self._received.set()

    def reached(self, step: int, manager) -> bool:
        """True at the step to save and stop at (the same step on every process)."""
        if self._jax_syncs:
            return manager.reached_preemption(step)
        return self._received.is_set()
