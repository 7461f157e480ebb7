"""Shared bench helpers: load the pack, time calls, measure a CPU peak in a fresh child process.

- :func:`load_pack` loads the repo root as ``consistent_video_kit`` (as the tests do) and returns it.
- :class:`CallTimer` wraps a callable and adds up the seconds spent inside it and its calls.
- :func:`child_env` and :func:`run_child`: each memory measurement runs in a fresh process with one thread and glibc
  told to serve every allocation ≥ 64 kB by ``mmap`` and give it back on free (``MALLOC_MMAP_THRESHOLD_``), so the
  resident set follows live tensors instead of the allocator's caches; the child prints one JSON line last.
- :class:`PeakRSS` (in the child): :meth:`~PeakRSS.reset` takes the baseline and resets the kernel's peak-RSS mark
  (``/proc/self/clear_refs`` ← 5, Linux); :meth:`~PeakRSS.peak` is ``VmHWM`` − baseline in bytes (``ru_maxrss`` if
  the mark cannot be reset, which hides growth below the process's earlier peak).
- :func:`malloc_in_use`: bytes glibc's malloc has handed out and not taken back right now (``mallinfo2``: heap
  chunks in use + mmap'd chunks), exact to the byte; torch's CPU tensors come from malloc, Python's small objects
  mostly from its own arenas (not counted). None where there is no glibc ≥ 2.33.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 2 ** 20


def load_pack():
    """The pack as ``consistent_video_kit`` (offline: nothing from a hub)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tests = os.path.join(ROOT, "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from cvk_testkit import load_pack as load
    return load()


class CallTimer:
    """``CallTimer(f)`` calls ``f`` and adds up ``seconds`` inside it and ``calls``."""

    def __init__(self, f):
        self.f, self.seconds, self.calls = f, 0.0, 0

    def __call__(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self.f(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRSS:
    """Peak resident memory of this process above a baseline, bytes (Linux; see the module docstring)."""

    def reset(self) -> int:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.exact = True
        except OSError:
            self.exact = False
        self.base = _status_kb("VmRSS") * 1024
        return self.base

    def peak(self) -> int:
        hwm = _status_kb("VmHWM") if self.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return hwm * 1024 - self.base


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo2():
    try:
        f = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    f.restype = _MallInfo2
    return f


_MALLINFO2 = _mallinfo2()


def malloc_in_use():
    """Bytes in use in glibc's malloc now (heap + mmap'd chunks), or None without ``mallinfo2``."""
    if _MALLINFO2 is None:
        return None
    m = _MALLINFO2()
    return m.uordblks + m.hblkhd


def child_env(**extra) -> dict:
    """The environment of a measuring child: one thread, mmap'd large allocations returned at once, offline."""
    return dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0",
                HF_HUB_OFFLINE="1", **extra)


def run_child(cmd: list, **extra) -> dict:
    """Run ``cmd`` with :func:`child_env` and return the JSON of its last output line (its stderr on failure)."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(**extra))
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_children(cmds: list, jobs: int = 1, **extra):
    """:func:`run_child` for each of ``cmds``, up to ``jobs`` at a time (a peak measured per process is not changed
    by its neighbours; times are); yields the results in order."""
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        yield from pool.map(lambda c: run_child(c, **extra), cmds)
