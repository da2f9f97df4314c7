"""What the machine offers and what it is: memory (the container's limit where that is lower), cores, CPU.

Both the fold scheduler (its memory budget) and the deployment defaults read it, so it lives
below both.
"""

from __future__ import annotations

import errno
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


def address_space_limit_mb() -> int | None:
    """This process's address-space limit (``ulimit -v``, often set on shared and HPC machines), or
    None when there is none. TensorFlow alone maps several GB of address space it never touches."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, AttributeError, ValueError, OSError):
        return None
    return None if limit == resource.RLIM_INFINITY else limit // 2**20


# Address space a process using TensorFlow needs (it maps several GB it never touches): loading
# and running a CNN hung or aborted under ulimit -v of 1.6-2.0 GB here, and worked at 3 GB.
CNN_ADDRESS_SPACE_MB = 3000


def address_space_refusal(what: str) -> str | None:
    """Why ``what``, which loads TensorFlow, cannot work under this process's address-space limit
    (one line), or None. Said before TensorFlow is loaded: under such a limit it can hang, deaf to
    SIGTERM, or abort with a C++ stack instead of raising."""
    limit = address_space_limit_mb()
    if limit is None or limit >= CNN_ADDRESS_SPACE_MB:
        return None
    return (f"{what} needs about {CNN_ADDRESS_SPACE_MB:,} MB of address space for TensorFlow, and each process "
            f"may map at most {limit:,} MB here (ulimit -v): raise or remove that limit")


def memory_limit_hint(needed_mb: float | None = None) -> str:
    """What to do when memory ran out: the address-space limit when one is set, else a smaller
    load; a smaller load in any case when one array needed ``needed_mb``, more than the machine has."""
    limit = address_space_limit_mb()
    hint = "give fewer workers (--n-jobs), a smaller --image-size or --augment-factor"
    memory = machine_memory_mb()
    if needed_mb is not None and memory is not None and needed_mb > memory / 2:  # no limit to raise would do
        return (f"one array alone needed {needed_mb:,.0f} MB, more than half of this machine's {memory:,} MB: "
                "give a smaller --image-size or --augment-factor")
    if limit is None:
        return hint
    # The limit holds for each process, so fewer workers would not help: the limit itself must rise.
    return (f"each process may map at most {limit:,} MB of address space here (ulimit -v): a CNN worker needs "
            f"about {CNN_ADDRESS_SPACE_MB:,} MB, a scikit-learn one about 1,500 MB; raise or remove that limit")


def out_of_memory(error: BaseException):
    """A :class:`RunError` that says memory ran out, when ``error`` is how that shows (MemoryError,
    or a library that could not be loaded for want of address space); None for any other error."""
    from leukdash.errors import RunError

    said = str(error).lower()
    unmapped = isinstance(error, (ImportError, OSError)) and ("failed to map segment" in said
                                                               or "cannot allocate memory" in said)
    if not (isinstance(error, MemoryError) or unmapped):
        return None
    needed = getattr(error, "_total_size", None)  # numpy's MemoryError says how large the array was
    try:
        hint = memory_limit_hint(needed / 2**20 if isinstance(needed, int) else None)
    except MemoryError:  # telling what to do reads files (a cgroup's limit), which can run out in turn
        hint = "raise or remove the memory limit (ulimit -v, a container's), or give a smaller load"
    return RunError(f"out of memory ({type(error).__name__}: {str(error) or 'no detail'}): finished folds are kept; "
                    f"{hint}")


def out_of_processes(error: BaseException) -> str | None:
    """One line when ``error`` is this process out of file descriptors (``ulimit -n``) or unable
    to start a process or thread (``ulimit -u``, or memory), else None."""
    if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
        try:
            import resource

            allowed = f"each process may open {resource.getrlimit(resource.RLIMIT_NOFILE)[0]:,} files here (ulimit -n)"
        except (ImportError, ValueError, OSError):
            allowed = "the open-file limit is reached (ulimit -n)"
        return f"too many open files: {allowed}; raise that limit, or give --n-jobs 1 (fewer worker processes)"
    if (isinstance(error, OSError) and error.errno == errno.EAGAIN) or \
            (isinstance(error, RuntimeError) and "can't start new thread" in str(error)):
        return ("cannot start another process or thread: this user's process limit (ulimit -u) or the memory is "
                "reached; raise that limit, or give --n-jobs 1 (fewer worker processes)")
    return None


# Below this many processes and threads for the user (ulimit -u), OpenBLAS computes with one thread:
# it starts a thread per core, and one it cannot start ends the process with SIGINT and then a crash,
# where the worker pool's own start says the limit in one line (out_of_processes).
LOW_PROCESS_LIMIT = 1024


def fit_blas_threads_to_process_limit() -> None:
    """Set ``OPENBLAS_NUM_THREADS=1`` (unless set) when this user's process limit is low, or the
    address space below what a CNN needs: OpenBLAS maps a 32 MB buffer per thread as it starts, and
    one it cannot map it retries forever, deaf to SIGTERM. To be called before numpy is first
    imported, since OpenBLAS reads it once. Standard library only."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    except (ImportError, AttributeError, ValueError, OSError):
        return
    space = address_space_limit_mb()
    if (limit != resource.RLIM_INFINITY and limit < LOW_PROCESS_LIMIT) or \
            (space is not None and space < CNN_ADDRESS_SPACE_MB):
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


# Address space the numerical libraries need to be imported at all (numpy, OpenCV, SciPy, scikit-learn;
# OpenBLAS with one thread), measured by importing them under ulimit -v: 700 MB worked, 600 MB gave a
# traceback, 350-550 MB a segmentation fault or a hang. A margin for what a command then loads.
START_ADDRESS_SPACE_MB = 1000
NUMERICAL_LIBRARIES = ("numpy", "cv2", "scipy", "sklearn")


class _RefusedUnderAddressSpaceLimit:
    """A finder first on ``sys.meta_path`` that raises, in one line, on the import of a numerical
    library under an address-space limit too low to map it (which would crash, hang or fail in a
    traceback); other imports go on (a store's listing needs none of them)."""

    def __init__(self, line: str):
        self.line = line

    def find_spec(self, name, path=None, target=None):
        if name in NUMERICAL_LIBRARIES:
            from leukdash.errors import RunError

            raise RunError(self.line)
        return None


def refuse_numerical_libraries_under_low_address_space() -> None:
    """When this process may map less than :data:`START_ADDRESS_SPACE_MB` (ulimit -v), make the first
    import of a numerical library raise one line instead; to be called before any is imported."""
    import sys

    limit = address_space_limit_mb()
    if limit is not None and limit < START_ADDRESS_SPACE_MB:
        sys.meta_path.insert(0, _RefusedUnderAddressSpaceLimit(
            f"each process may map at most {limit:,} MB of address space here (ulimit -v), below the about "
            f"{START_ADDRESS_SPACE_MB:,} MB this command needs to start (its numerical libraries): raise or "
            "remove that limit"))


def configured_memory_mb() -> int | None:
    """``$LEUKDASH_MEMORY_MB``, the memory the local pool's workers may take, or None where it is not set;
    a value that is no positive whole number raises :class:`~leukdash.errors.ConfigError`. Standard library
    only: the dashboard checks it as it starts, as a deployment setting, before any page estimates with it."""
    configured = os.environ.get("LEUKDASH_MEMORY_MB")
    if not configured:
        return None
    try:
        value = int(configured)
    except ValueError:
        value = 0
    if value <= 0:
        from leukdash.errors import ConfigError

        raise ConfigError(f"LEUKDASH_MEMORY_MB must be a positive whole number of megabytes (e.g. 4096), "
                          f"got {configured!r}")
    return value


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
