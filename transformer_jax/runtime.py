"""Process set-up shared by every entry point."""

import logging
import sys

from absl import logging as absl_logging


def setup_host() -> None:
    """Keeps TensorFlow (the input pipeline) off accelerators and makes logs readable."""
    import tensorflow as tf

    # TensorFlow would otherwise grab all GPU memory that JAX needs.
    tf.config.set_visible_devices([], "GPU")
    # Orbax, TF and JAX log a lot through absl at INFO; only their warnings reach the console.
    absl_logging.set_verbosity(absl_logging.WARNING)
    ours = logging.getLogger("transformer_jax")
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False
