"""What the machine offers: its memory (the container's limit where that is lower).

Both the fold scheduler (its memory budget) and the deployment defaults read it, so it lives
below both.
"""

from __future__ import annotations

import os


def machine_memory_mb() -> int | None:
    """Physical memory, or the container's limit where it is lower (cgroup v2, then v1)."""
    found = []
    try:
        found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20)
    except (AttributeError, ValueError, OSError):
        pass
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(limit).read().strip()
        except OSError:
            continue
        if text.isdigit():
            found.append(int(text) // 2**20)
    return min(found) if found else None
