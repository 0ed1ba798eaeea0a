"""Multi-host start-up: one process per host, joined by JAX's own multi-controller runtime.

`initialize()` calls `jax.distributed.initialize` when the run spans several processes and
does nothing on one host. Several processes are recognised from

  * --coordinator_address / --num_processes / --process_id (or JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES, JAX_PROCESS_ID), e.g. `launch/local_multiprocess.sh`;
  * a SLURM job step with more than one task (`srun`, `launch/slurm_gpu.sbatch`);
  * a multi-host Cloud TPU slice that names its workers (TPU_WORKER_HOSTNAMES with several
    hosts, as on GKE, or MEGASCALE_COORDINATOR_ADDRESS).

On a Cloud TPU VM pod slice created with `gcloud` the worker list lives in the metadata
server, not the environment: `launch/tpu_vm.sh` passes --multihost=on, and JAX then finds
the coordinator itself. --multihost=off never initializes (one process per host, each its
own run: not what you want on a pod).

Without a coordinator nothing else can make the processes agree, so a start-up that cannot
reach it fails after --multihost_timeout seconds with the address it tried, instead of
hanging.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping

import jax

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")


class JoinError(RuntimeError):
    """This process could not join the others."""


def define_flags() -> None:
    """The multi-host flags of every entry point (defaults from the JAX_* variables)."""
    from absl import flags

    env = os.environ
    flags.DEFINE_enum("multihost", "auto", MODES,
                      "auto: join the other processes when the environment shows several "
                      "(coordinator flags, SLURM, a multi-host TPU slice); on: always call "
                      "jax.distributed.initialize (Cloud TPU VM pods); off: never.")
    flags.DEFINE_string("coordinator_address", env.get("JAX_COORDINATOR_ADDRESS"),
                        "host:port of process 0's coordinator (JAX_COORDINATOR_ADDRESS).")
    flags.DEFINE_integer("num_processes", _int_env("JAX_NUM_PROCESSES"),
                         "Number of processes (JAX_NUM_PROCESSES).")
    flags.DEFINE_integer("process_id", _int_env("JAX_PROCESS_ID"),
                         "This process's index, 0..num_processes-1 (JAX_PROCESS_ID).")
    flags.DEFINE_integer("multihost_timeout", 300,
                         "Seconds to wait for every process to join before failing.")


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def detect(coordinator_address: str | None, environ: Mapping[str, str] = os.environ
           ) -> str | None:
    """Why this run spans several processes, or None for a single-host run."""
    if coordinator_address:
        return f"coordinator {coordinator_address}"
    tasks = environ.get("SLURM_NTASKS") or environ.get("SLURM_NPROCS")
    if environ.get("SLURM_JOB_ID") and tasks and int(tasks) > 1:
        return f"SLURM job {environ['SLURM_JOB_ID']} with {tasks} tasks"
    workers = [h for h in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    if len(workers) > 1:
        return f"Cloud TPU slice of {len(workers)} hosts"
    if environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "Cloud TPU multislice"
    return None


def initialize(mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               timeout_s: int = 300, environ: Mapping[str, str] = os.environ) -> bool:
    """Joins the other processes when there are any; True when it did."""
    if mode not in MODES:
        raise ValueError(f"--multihost={mode!r}: choose one of {list(MODES)}")
    reason = detect(coordinator_address, environ)
    if mode == "off" or (mode == "auto" and reason is None):
        return False
    if coordinator_address and (num_processes is None or process_id is None):
        raise ValueError(f"--coordinator_address={coordinator_address} needs --num_processes "
                         "and --process_id (or JAX_NUM_PROCESSES and JAX_PROCESS_ID)")
    if num_processes is not None and process_id is not None and not (
            0 <= process_id < num_processes):
        raise ValueError(f"--process_id={process_id} must be in [0, {num_processes})")
    # CPU processes exchange data through gloo (TPU and GPU use their own interconnect).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    log.info("joining a multi-process run (%s)", reason or "--multihost=on")
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address or None,
                                   num_processes=num_processes, process_id=process_id,
                                   initialization_timeout=timeout_s)
    except Exception as error:  # JAX raises assorted errors: say which step failed
        where = coordinator_address or "the coordinator JAX detected"
        raise JoinError(
            f"could not join the multi-process run at {where} within {timeout_s} s "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): start "
            "every process with the same --coordinator_address and --num_processes, each "
            "with its own --process_id, and check that process 0's host is reachable"
        ) from None
    log.info("process %d of %d: %d local devices of %d", jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


def initialize_from_flags() -> bool:
    from absl import flags

    f = flags.FLAGS
    return initialize(f.multihost, f.coordinator_address, f.num_processes, f.process_id,
                      f.multihost_timeout)
