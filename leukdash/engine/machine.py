"""What the machine offers and what it is: memory (the container's limit where that is lower), cores, CPU.

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


def machine_cores() -> int:
    """Cores this process may use (its CPU affinity where the platform tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def cpu_model() -> str:
    """The CPU's model name ('AMD EPYC 9R14 ...'), or the platform's processor string."""
    import platform

    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_machine() -> dict:
    """What fold times depend on, recorded beside them: the same CNN fold takes 40-45 s on an
    AVX-512/BF16 EPYC and 300-400 s on an AVX2 one, so a time means little without its CPU."""
    from leukdash.models.cnn import native_bfloat16

    return {"cpu": cpu_model(), "cores": machine_cores(), "native_bfloat16": native_bfloat16(),
            "memory_mb": machine_memory_mb()}


def machine_text(machine: dict | None) -> str:
    """One line for a described machine: 'AMD EPYC 9R14, 2 cores, native bfloat16'."""
    if not machine:
        return "machine not recorded"
    bf16 = "native bfloat16" if machine.get("native_bfloat16") else "no native bfloat16"
    return f"{machine.get('cpu', 'unknown CPU')}, {machine.get('cores', '?')} cores, {bf16}"
