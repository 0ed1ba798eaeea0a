"""Process set-up shared by every entry point."""

import importlib.util
import logging
import re
import sys

from absl import logging as absl_logging


def setup_host(loggers: tuple[str, ...] = ("transformer_jax",), *,
               uses_tensorflow: bool = True) -> None:
    """Tunes host malloc for XLA:CPU, keeps TensorFlow (the input pipeline) off accelerators
    and makes logs readable.

    ``loggers``: the packages whose INFO logs reach the console (the engine's always do).
    ``uses_tensorflow``: False for programs that never import it (the benchmarks time
    synthetic batches), which then skip its import (~10 s) and its GPU set-up.
    Call it first in an entry point: the malloc settings hold only for threads started later.
    """
    from transformer_jax import host_memory

    malloc_note = host_memory.tune_for_xla_cpu()
    # TensorFlow would otherwise grab all GPU memory that JAX needs. Where it is not
    # installed, or never imported (the benchmarks: synthetic batches, no tf.data), there is
    # nothing to hide, so they also run on an image that has JAX but not TensorFlow.
    if uses_tensorflow and importlib.util.find_spec("tensorflow") is not None:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    # Orbax, TF and JAX log a lot through absl at INFO; only their warnings reach the console.
    absl_logging.set_verbosity(absl_logging.WARNING)
    for name in dict.fromkeys(("transformer_jax", *loggers)):
        ours = logging.getLogger(name)
        if not ours.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
            ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    logging.getLogger("transformer_jax").info(malloc_note)


def define_training_flags() -> None:
    """The flags every training entry point shares beyond --config and --workdir:
    multi-host start-up and the compile-only memory report."""
    from absl import flags

    from transformer_jax import distributed

    distributed.define_flags()
    flags.DEFINE_bool("compile_only", False,
                      "Compile the train step from shapes and report per-device memory for "
                      "the config's mesh and batch; train nothing (--workdir is untouched).")
    flags.DEFINE_string("topology", "",
                        "With --compile_only: a target slice as PLATFORM:TOPOLOGY, e.g. "
                        "tpu:v4:2x2x4 (a v4-32; needs libtpu, not a TPU). Default: this host.")


def quiet_other_processes(loggers: tuple[str, ...] = ("transformer_jax",)) -> None:
    """Only process 0 logs progress; the others keep their warnings and errors."""
    import jax

    if jax.process_index() != 0:
        for name in dict.fromkeys(("transformer_jax", *loggers)):
            logging.getLogger(name).setLevel(logging.WARNING)


# A run stopped by SIGTERM (preemption) after saving a checkpoint exits with this code:
# sysexits.h's EX_TEMPFAIL, "try again later", so a scheduler or wrapper can restart it.
PREEMPTED_EXIT_CODE = 75


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing that reports a bad flag or config override in one line.

    Passed as ``app.run(main, flags_parser=parse_flags)``; without it a misspelt
    ``--config.field`` surfaces as a raw AttributeError traceback.
    """
    from absl import flags

    try:
        remaining = flags.FLAGS(argv)
        _check_config_loaded(flags.FLAGS)
        return remaining
    except (AttributeError, KeyError) as error:
        # ml_collections names the unknown leaf only ('foo'), or, for a near miss, adds
        # 'Did you mean "bar" instead of "foo"?'; show the flag that set it.
        text = str(error)
        if near_miss := re.search(r'Did you mean "([\w.]+)" instead of "([\w.]+)"', text):
            field, hint = near_miss.group(2), f" (did you mean '{near_miss.group(1)}'?)"
        else:
            field, hint = text.strip(chr(34)).strip("'"), ""
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        culprits = [a for a in overrides
                    if re.fullmatch(rf"--config\.(?:[\w.]+\.)?{re.escape(field)}(=.*)?", a)]
        _exit(f"unknown config field '{field}' in {' '.join(culprits or overrides)}{hint}; "
              "override only fields that exist in the config file")
    except (flags.Error, TypeError, ValueError) as error:
        _exit(f"{last_line(error)} (see --helpshort)")


def _check_config_loaded(flag_values) -> None:
    """config_flags defers a config file's load error until first use; surface it now."""
    if "config" not in flag_values or flag_values["config"].value is None:
        return
    try:
        flag_values["config"].value.keys()
    except Exception as error:  # whatever the config file raised while loading
        _exit(f"cannot load --config: {last_line(error)}")


# "... assertion failed: [<message>] [Condition x < y did not hold ...] ..."
_TF_ASSERTION = re.compile(r"assertion failed: \[(.+?)\] \[")


def last_line(error: BaseException) -> str:
    """The line that names the problem; config errors carry a whole traceback before it, and
    a tf.data assertion wraps its message in the op's name and the values it compared."""
    if assertion := _TF_ASSERTION.search(str(error)):
        return assertion.group(1)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else repr(error)


def _exit(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)
