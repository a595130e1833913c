"""A process that has imported ``worker.py`` once and forks a worker process per line it reads.

``python -m tests.worker_forks LOG_DIR``: each line on stdin starts a worker (``worker.run_worker``,
configured by this process's ``TEMPORAL_*`` and ``HARNESS_*`` environment) in a forked child and
answers its PID on stdout; the child's stderr goes to ``LOG_DIR/worker-<pid>.log``. Children are
reaped here (SIGCHLD ignored), so the parent test only ever signals them by PID.

Why fork: importing the worker (the Temporal SDK, every workflow) and the OpenAI SDK its ``sim:``
calls go through costs seconds of CPU, so on two cores a fresh ``python worker.py`` every 3 s would
spend most of the CPU importing. A forked worker is as real a process to kill as a fresh one, and
starts in well under a second. The worker imports a provider SDK only with its first call to that
provider, so this process imports the one the tests' ``sim:`` models need before it forks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

import openai  # noqa: F401  # see the docstring: every child would import it again otherwise

import worker


def serve(log_dir: Path) -> None:
    """Fork a worker for each line on stdin, answering its PID, until stdin closes."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Forking is safe only while this process has no other thread (none of the imports starts one).
    assert threading.active_count() == 1, threading.enumerate()
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            _run_child(log_dir)
        print(pid, flush=True)


def _run_child(log_dir: Path) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log = os.open(log_dir / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log, 2)
    code = 0
    try:
        asyncio.run(worker.run_worker())
    except BaseException:  # the worker's own reason to stop goes to its log
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
