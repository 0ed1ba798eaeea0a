"""The host malloc tuning: XLA:CPU's per-call temporaries stop being faulted in on every call."""

import os
import subprocess
import sys
import textwrap

import pytest

from transformer_jax import host_memory

# A jitted call whose temporaries (96 MB: XLA:CPU's cumulative sum works in two 48 MB
# buffers, above glibc's largest mmap threshold of 32 MB) are freed when it returns; its
# output is small. Prints how many of the last 20 of 60 calls faulted in fresh memory
# (more than a tenth of a call's pages).
_FRESH_MEMORY_CALLS = textwrap.dedent("""
    import resource, sys
    from transformer_jax import host_memory
    print(host_memory.tune_for_xla_cpu(), file=sys.stderr)
    import jax, jax.numpy as jnp
    step = jax.jit(lambda x: jnp.cumsum(x * 2.0)[::4096])
    x = jnp.arange(12 * 1024 * 1024, 0, -1, dtype=jnp.float32)
    fresh = []
    for _ in range(60):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step(x).block_until_ready()
        fresh.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before > 2450)
    print(sum(fresh[-20:]))
""")


def _fresh_memory_calls(system_malloc: bool) -> int:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "TRANSFORMER_JAX_SYSTEM_MALLOC": "1" if system_malloc else "0"}
    env.pop("XLA_FLAGS", None)  # one device: the temporaries are not split into shards
    result = subprocess.run([sys.executable, "-c", _FRESH_MEMORY_CALLS], env=env,
                            capture_output=True, text=True, timeout=300, check=True)
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_malloc_reuses_the_temporaries_of_earlier_calls():
    # glibc's defaults map every call's temporaries afresh and fault in every page.
    assert _fresh_memory_calls(system_malloc=True) == 20
    # Tuned, the heap settles within the first tens of calls (see host_memory's docstring);
    # after that a call reuses the memory an earlier one freed.
    assert _fresh_memory_calls(system_malloc=False) <= 5


def test_accelerator_hosts_are_left_alone():
    assert host_memory.runs_on_cpu("cpu", ["xla_cuda12"])
    assert host_memory.runs_on_cpu(None, [])
    assert not host_memory.runs_on_cpu(None, ["libtpu"])
    assert not host_memory.runs_on_cpu("cuda,cpu", [])
    assert not host_memory.runs_on_cpu("tpu", [])


def test_this_cpu_host_has_no_accelerator_plugin():
    # The test environment installs jax[cpu]: nothing for JAX to prefer over the CPU.
    assert host_memory.installed_accelerator_plugins() == []
