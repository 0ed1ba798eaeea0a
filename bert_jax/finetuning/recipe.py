"""BERT's fine-tuning recipe expressed in the engine's step-based config: epochs become
steps, the dev set is evaluated (and a checkpoint saved) once per epoch, warmup is a fraction
of all steps, and the best epoch is kept by the task's main metric."""

import logging
import math

import ml_collections

log = logging.getLogger(__name__)


def apply_epochs(config: ml_collections.ConfigDict, steps_per_epoch: int,
                 main_metric: str) -> None:
    """Fills num_train_steps, eval/checkpoint cadence, warmup and best_metric in place."""
    if config.num_train_epochs <= 0:
        raise ValueError(f"num_train_epochs={config.num_train_epochs} must be positive")
    if not 0.0 <= config.warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction={config.warmup_fraction} must be in [0, 1)")
    steps = max(1, math.ceil(config.num_train_epochs * steps_per_epoch))
    config.num_train_steps = steps
    config.eval_every = config.checkpoint_every = steps_per_epoch
    config.log_every = max(1, min(config.log_every, steps_per_epoch))
    config.optimizer.warmup_steps = int(config.warmup_fraction * steps)
    config.best_metric = f"eval/{main_metric}"
    log.info("%g epochs of %d steps = %d steps, %d warmup; best epoch by %s",
             config.num_train_epochs, steps_per_epoch, steps, config.optimizer.warmup_steps,
             config.best_metric)
