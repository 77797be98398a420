"""Shared by the predict tests: run ``wildfer predict`` in a child process and press Ctrl-C
once it has finished some photos."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def interrupt_after(args: list[str], progress: Path, n_done: int, env: dict, wait_s: float = 180) -> tuple[int, str, list[str]]:
    """Start ``wildfer ARGS``, send SIGINT once ``progress`` (predict's JSONL progress file)
    holds ``n_done`` records; return (exit code, stderr, the paths recorded before the signal)."""
    from wildfer.batch.outputs import read_progress

    # SIGINT back to its default in the child: a shell starts background jobs with it ignored,
    # and Python then never turns it into KeyboardInterrupt
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from wildfer.cli import main; sys.exit(main())", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + wait_s
        while len(read_progress(progress)) < n_done:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no photo finished in time"
            time.sleep(0.02)
        seen = [r["path"] for r in read_progress(progress)]
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stderr, seen
