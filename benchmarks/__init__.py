"""Performance measurements. Run all with `make bench`, one with `python -m benchmarks NAME`."""

from __future__ import annotations

from pathlib import Path


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started (or since its last `exec`).

    Read from `/proc/self/status` (`VmHWM`), not `getrusage(...).ru_maxrss`: Linux carries
    `ru_maxrss` across `exec`, so a child started by a big parent (Python spawns with vfork)
    reports at least the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource  # not Linux: the best figure there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
