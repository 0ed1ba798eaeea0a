"""Host malloc settings that let XLA:CPU reuse a train step's memory instead of faulting it in.

XLA:CPU allocates one block for all of a step's temporaries (the activations kept for the
backward pass and the workspace: 1.1 GB for the Transformer base step at batch 16 x 64) with
`posix_memalign`, on every step, from a thread of its pool. glibc serves a block that large
in a thread's arena with a fresh `mmap` and gives it back with `munmap` when the step ends,
so on every step the kernel faults in and zeroes every page again: 265,000 page faults and
~0.4 s of system CPU time per Transformer base step, ~7% of its wall time on 2 cores.

Three `mallopt` settings make glibc keep that memory and reuse it:
  * one arena: a thread arena's heaps are capped at 64 MB, so a larger block there is
    always a fresh mmap, whatever the other settings say;
  * no mmap: large blocks come from the main heap, like small ones;
  * no trimming: the freed top of the heap stays mapped for the next step.
They hold only for threads that have not allocated yet (a thread keeps the arena of its first
allocation), so `tune_for_xla_cpu` runs first thing in every entry point's `main`, before JAX
creates its CPU client, whose pool threads allocate the step's buffers (in the training
programs and the benches also before TensorFlow is imported and starts threads of its own).

The price is host memory. The process keeps its peak until it exits, and the heap settles
above it: a block freed by one step is pinned by small allocations made next to it (glibc's
per-thread caches hold the small remainders that `posix_memalign` cuts off), so for the
first tens of steps a step now and then takes fresh memory instead. Measured: resident
memory of the Transformer base bench 3.2 GB for 70 steps, then 5.2 GB (the default: 3.4 GB);
for a 192 MB temporary it levels off at 1.6 GB after ~10 such steps (default 0.5 GB), then
stays there for 1000 steps. Set TRANSFORMER_JAX_SYSTEM_MALLOC=1 to keep glibc's defaults.

Only on the CPU backend: on GPU and TPU hosts the step's buffers live on the device, and one
arena would make the input pipeline's many allocating threads queue for nothing. A malloc
library like tcmalloc (via LD_PRELOAD) would do the same job; glibc's `mallopt` needs nothing
installed and nothing set before Python starts, which is why it is done here by hand.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform
import sys

# glibc's <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def runs_on_cpu(jax_platforms: str | None, accelerator_plugins: list[str]) -> bool:
    """Whether JAX's default backend will be the CPU.

    ``jax_platforms``: JAX_PLATFORMS (JAX's order of preference) when set; otherwise JAX
    prefers any installed accelerator plugin (``accelerator_plugins``) to the CPU.
    """
    if jax_platforms:
        return jax_platforms.split(",")[0].strip() == "cpu"
    return not accelerator_plugins


def installed_accelerator_plugins() -> list[str]:
    """JAX's GPU/TPU back ends that are installed (found the way JAX finds them)."""
    found = [entry.value for entry in importlib.metadata.entry_points(group="jax_plugins")]
    namespace = importlib.util.find_spec("jax_plugins")
    if namespace is not None and namespace.submodule_search_locations:
        for location in namespace.submodule_search_locations:
            if os.path.isdir(location):
                found += [name for name in os.listdir(location) if not name.startswith("_")]
    if importlib.util.find_spec("libtpu") is not None:
        found.append("libtpu")
    return found


def tune_for_xla_cpu() -> str:
    """Applies the settings when JAX will run on this host's CPU; says what it did, for the log."""
    if os.environ.get("TRANSFORMER_JAX_SYSTEM_MALLOC") == "1":
        return "host malloc left as is: TRANSFORMER_JAX_SYSTEM_MALLOC=1"
    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        return f"host malloc left as is: the tuning is for glibc, this is {sys.platform}"
    plugins = installed_accelerator_plugins()
    if not runs_on_cpu(os.environ.get("JAX_PLATFORMS"), plugins):
        return f"host malloc left as is: JAX will run on an accelerator ({', '.join(plugins)})"
    libc = ctypes.CDLL(None)
    for parameter, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)):
        # -1 as M_TRIM_THRESHOLD means "never trim" (mallopt(3)); mallopt returns 1 on success.
        if libc.mallopt(parameter, value) != 1:
            raise RuntimeError(f"glibc refused mallopt({parameter}, {value})")
    return "host malloc: one arena, no mmap, no trim (XLA:CPU reuses each step's temporaries)"
