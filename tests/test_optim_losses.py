"""Tests for engine/optim.py (schedules, decay mask, clipping, accumulation) and losses.py."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from transformer_jax.engine import losses, optim

D_MODEL = 512
PAPER_WARMUP = 4000


def make_opt_config(**overrides) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(
        dict(
            name="adamw",
            learning_rate=1.0,
            schedule="rsqrt",
            warmup_steps=PAPER_WARMUP,
            decay_steps=0,
            b1=0.9,
            b2=0.98,
            eps=1e-9,
            weight_decay=0.0,
            clip_grad_norm=0.0,
            grad_accum_steps=1,
        )
    )
    config.update(overrides)
    return config


def schedule_for(**overrides):
    return optim.create_learning_rate_schedule(
        make_opt_config(**overrides), d_model=D_MODEL, num_train_steps=110
    )


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("paper_step", [1, 100, 4000, 4001, 100000])
def test_rsqrt_matches_paper_formula(paper_step):
    schedule = schedule_for(schedule="rsqrt")
    expected = D_MODEL**-0.5 * min(paper_step**-0.5, paper_step * PAPER_WARMUP**-1.5)
    # optax counts from 0, the paper from 1.
    np.testing.assert_allclose(schedule(paper_step - 1), expected, rtol=1e-6)


def test_rsqrt_peaks_at_warmup_and_scales_with_multiplier():
    schedule = schedule_for(schedule="rsqrt")
    peak = D_MODEL**-0.5 * PAPER_WARMUP**-0.5
    values = np.array([schedule(c) for c in range(3990, 4010)])
    np.testing.assert_allclose(values.max(), peak, rtol=1e-6)
    assert values.argmax() + 3990 == PAPER_WARMUP - 1
    assert 0 < schedule(0) < peak
    doubled = schedule_for(schedule="rsqrt", learning_rate=2.0)
    np.testing.assert_allclose(doubled(123), 2 * schedule(123), rtol=1e-6)


def test_linear_warmup_then_decay_to_zero_at_num_train_steps():
    schedule = schedule_for(schedule="linear", learning_rate=2.0, warmup_steps=10)
    for step, expected in [(0, 0.0), (5, 1.0), (10, 2.0), (60, 1.0), (110, 0.0), (200, 0.0)]:
        np.testing.assert_allclose(schedule(step), expected, atol=1e-6, err_msg=f"step {step}")


def test_linear_decay_steps_overrides_num_train_steps():
    schedule = schedule_for(schedule="linear", learning_rate=2.0, warmup_steps=10, decay_steps=50)
    np.testing.assert_allclose([schedule(30), schedule(50)], [1.0, 0.0], atol=1e-6)


def test_constant_with_and_without_warmup():
    warm = schedule_for(schedule="constant", learning_rate=0.3, warmup_steps=4)
    np.testing.assert_allclose([warm(0), warm(2), warm(4), warm(1000)], [0, 0.15, 0.3, 0.3])
    cold = schedule_for(schedule="constant", learning_rate=0.3, warmup_steps=0)
    np.testing.assert_allclose([cold(0), cold(7)], [0.3, 0.3])


# ------------------------------------------------------------------------- decay mask


class TinyModel(nn.Module):
    """Embedding, Dense, LayerNorm and a named final norm; kernels boxed when `boxed`."""

    boxed: bool = False

    @nn.compact
    def __call__(self, ids):
        kernel_init = nn.initializers.lecun_normal()
        if self.boxed:
            kernel_init = nn.with_logical_partitioning(kernel_init, ("embed", "mlp"))
        x = nn.Embed(11, 5, name="embed")(ids)
        x = nn.Dense(7, kernel_init=kernel_init)(x)
        x = nn.LayerNorm()(x)
        x = nn.Dense(3, kernel_init=kernel_init, name="out")(x)
        return nn.LayerNorm(name="encoder_norm")(x)


EXPECTED_MASK = {
    "embed": {"embedding": True},
    "Dense_0": {"kernel": True, "bias": False},
    "LayerNorm_0": {"scale": False, "bias": False},
    "out": {"kernel": True, "bias": False},
    "encoder_norm": {"scale": False, "bias": False},
}


def init_params(boxed: bool):
    return TinyModel(boxed=boxed).init(jax.random.key(0), jnp.ones((2, 3), jnp.int32))["params"]


@pytest.mark.parametrize("boxed", [False, True])
def test_decay_mask_excludes_biases_and_layer_norms(boxed):
    mask = optim.decay_mask(init_params(boxed))
    assert nn.meta.unbox(mask) == EXPECTED_MASK
    if boxed:  # The mask keeps the boxes, so its structure matches the params for optax.
        assert isinstance(mask["Dense_0"]["kernel"], nn.LogicallyPartitioned)


@pytest.mark.parametrize(
    "module_name, param_name, decayed",
    [
        ("ln_f", "scale", False),
        ("layer_norm", "scale", False),
        ("attention_output_LayerNorm", "gamma", False),
        ("mlm_head", "output_bias", False),
        ("linear", "kernel", True),
    ],
)
def test_decay_mask_name_rules(module_name, param_name, decayed):
    mask = optim.decay_mask({module_name: {param_name: jnp.ones(2)}})
    assert mask[module_name][param_name] is decayed


@pytest.mark.parametrize("boxed", [False, True])
@pytest.mark.parametrize("name, decayed_value", [("adamw", 1 - 0.1 * 0.5), ("lamb", 1 - 0.1)])
def test_weight_decay_shrinks_only_decayed_params(boxed, name, decayed_value):
    """All-ones params, zero grads: Adam's own step is 0, so only decay moves anything.

    adamw: p - lr * wd * p. lamb: its trust ratio |p| / |wd * p| rescales that to p - lr * p.
    """
    config = make_opt_config(
        name=name, schedule="constant", learning_rate=0.1, warmup_steps=0, weight_decay=0.5
    )
    tx, _ = optim.create_optimizer(config, d_model=D_MODEL, num_train_steps=10)
    params = jax.tree.map(jnp.ones_like, init_params(boxed))
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new_params = nn.meta.unbox(optax.apply_updates(params, updates))

    def expected(decayed, leaf):
        return np.full(leaf.shape, decayed_value if decayed else 1.0)

    jax.tree.map(
        lambda want, got: np.testing.assert_allclose(got, want, rtol=1e-6),
        jax.tree.map(expected, EXPECTED_MASK, new_params),
        new_params,
    )


# --------------------------------------------------------------- clipping, accumulation


@pytest.mark.parametrize("grad_value, expected_mu_norm", [(100.0, 0.1 * 1.0), (0.01, 0.1 * 0.06)])
def test_clip_by_global_norm(grad_value, expected_mu_norm):
    """Adam's first moment after one step is (1 - b1) * the (clipped) gradient."""
    config = make_opt_config(name="adam", clip_grad_norm=1.0)
    tx, _ = optim.create_optimizer(config, d_model=D_MODEL, num_train_steps=10)
    params = {"w": jnp.zeros((4, 9))}  # 36 entries: |g| = 6 * grad_value.
    grads = {"w": jnp.full((4, 9), grad_value)}
    _, state = tx.update(grads, tx.init(params), params)
    mu = optax.tree_utils.tree_get(state, "mu")
    np.testing.assert_allclose(optax.tree.norm(mu), expected_mu_norm, rtol=1e-5)


def test_gradient_accumulation_equals_step_on_mean_gradient():
    """Two rounds of k=3 micro-steps == two plain steps on each round's mean gradient.

    The second round also checks that the schedule advances per update, not per micro-step.
    """
    # Clipping at 1.0 clips every micro-gradient (norms ~4.5) and every mean: clipping the
    # micro-gradients instead of their mean would not pass.
    config = make_opt_config(warmup_steps=3, weight_decay=0.01, clip_grad_norm=1.0)
    plain_tx, _ = optim.create_optimizer(config, d_model=D_MODEL, num_train_steps=10)
    config.grad_accum_steps = 3
    accum_tx, _ = optim.create_optimizer(config, d_model=D_MODEL, num_train_steps=10)

    keys = jax.random.split(jax.random.key(1), 7)
    params = {"Dense": {"kernel": jax.random.normal(keys[0], (3, 5)), "bias": jnp.ones(5)}}
    grads = [jax.tree.map(lambda p, k=k: jax.random.normal(k, p.shape), params) for k in keys[1:]]

    plain_params, plain_state = params, plain_tx.init(params)
    accum_params, accum_state = params, accum_tx.init(params)
    for round_grads in (grads[:3], grads[3:]):
        mean_grad = jax.tree.map(lambda *g: sum(g) / 3, *round_grads)
        updates, plain_state = plain_tx.update(mean_grad, plain_state, plain_params)
        plain_params = optax.apply_updates(plain_params, updates)
        for micro_step, grad in enumerate(round_grads):
            before = accum_params
            updates, accum_state = accum_tx.update(grad, accum_state, accum_params)
            accum_params = optax.apply_updates(accum_params, updates)
            if micro_step < 2:
                jax.tree.map(np.testing.assert_array_equal, accum_params, before)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
            accum_params,
            plain_params,
        )
    assert not np.allclose(plain_params["Dense"]["kernel"], params["Dense"]["kernel"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(name="sgd"), "adam, adamw, lamb"),
        (dict(schedule="cosine"), "rsqrt, linear, constant"),
        (dict(warmup_steps=-1), "warmup_steps=-1 is negative"),
        (dict(schedule="rsqrt", warmup_steps=0), "warmup_steps > 0"),
        (dict(schedule="linear", warmup_steps=200), "must exceed warmup_steps=200"),
        (dict(grad_accum_steps=0), "grad_accum_steps=0 must be >= 1"),
        (dict(clip_grad_norm=-1.0), "clip_grad_norm=-1.0 is negative"),
        (dict(name="adam", weight_decay=0.01), "no effect with 'adam'"),
    ],
)
def test_bad_config_raises_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        optim.create_optimizer(make_opt_config(**overrides), d_model=D_MODEL, num_train_steps=110)


def test_missing_required_field_is_named():
    config = make_opt_config()
    del config["b2"]
    with pytest.raises(ValueError, match="config.optimizer.b2 is missing"):
        optim.create_optimizer(config, d_model=D_MODEL, num_train_steps=10)


# ------------------------------------------------------------------------------ losses


def numpy_smoothed_cross_entropy(logits, targets, weights, label_smoothing):
    """Reference: explicit soft-target matrix, minus the soft target's own entropy."""
    vocab = logits.shape[-1]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    low = label_smoothing / (vocab - 1)
    soft = np.full(logits.shape, low)
    np.put_along_axis(soft, targets[..., None], 1 - label_smoothing, axis=-1)
    entropy = -np.sum(soft * np.log(np.where(soft > 0, soft, 1.0)), axis=-1)
    per_token = -np.sum(soft * log_probs, axis=-1) - entropy
    return np.sum(per_token * weights), np.sum(weights)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_matches_numpy(label_smoothing):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)).astype(np.float32) * 3
    targets = rng.integers(0, 7, size=(2, 3))
    weights = np.array([[1, 1, 0], [1, 0.5, 0]], np.float32)
    loss_sum, weight_sum = jax.jit(losses.weighted_cross_entropy, static_argnums=3)(
        logits, targets, weights, label_smoothing
    )
    expected = numpy_smoothed_cross_entropy(
        logits.astype(np.float64), targets, weights, label_smoothing
    )
    np.testing.assert_allclose([loss_sum, weight_sum], expected, rtol=1e-5)
    if label_smoothing == 0:  # Plain cross-entropy: -log p(target), weighted.
        log_p = jax.nn.log_softmax(logits)
        picked = np.take_along_axis(np.asarray(log_p), targets[..., None], -1)[..., 0]
        np.testing.assert_allclose(loss_sum, -(picked * weights).sum(), rtol=1e-5)


def test_cross_entropy_without_weights_counts_every_token():
    logits = jnp.zeros((3, 5, 4))  # Uniform prediction: loss log(4) per token.
    loss_sum, weight_sum = losses.weighted_cross_entropy(logits, jnp.zeros((3, 5), jnp.int32))
    np.testing.assert_allclose([loss_sum, weight_sum], [15 * np.log(4), 15], rtol=1e-6)


def test_perfect_smoothed_prediction_scores_zero():
    """Predicting exactly the soft target reaches the minimum, which is shifted to 0."""
    label_smoothing, vocab = 0.1, 7
    targets = jnp.array([0, 3, 6])
    soft = jax.nn.one_hot(targets, vocab) * (1 - label_smoothing - label_smoothing / 6) + (
        label_smoothing / 6
    )
    loss_sum, _ = losses.weighted_cross_entropy(jnp.log(soft), targets, None, label_smoothing)
    np.testing.assert_allclose(loss_sum, 0.0, atol=1e-5)
    # The shift is the soft target's entropy; over-confident predictions now cost more.
    constant = -(0.9 * np.log(0.9) + 6 * (0.1 / 6) * np.log(0.1 / 6))
    np.testing.assert_allclose(losses.smoothed_entropy(0.1, 7), constant, rtol=1e-12)
    sharp_sum, _ = losses.weighted_cross_entropy(
        50.0 * jax.nn.one_hot(targets, vocab), targets, None, label_smoothing
    )
    assert sharp_sum > 1.0


def test_weighted_accuracy():
    logits = jnp.array([[[0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]]])
    targets = jnp.array([[1, 2, 2, 1]])  # right, wrong, right, wrong
    weights = jnp.array([[1.0, 1.0, 0.5, 0.0]])
    correct_sum, weight_sum = losses.weighted_accuracy(logits, targets, weights)
    np.testing.assert_allclose([correct_sum, weight_sum], [1.5, 2.5])
    np.testing.assert_allclose(losses.weighted_accuracy(logits, targets), [2.0, 4.0])


def test_weighted_accuracy_is_argmax_accuracy_and_counts_a_tie_for_the_top_as_right():
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(size=(3, 7, 37)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 37, size=(3, 7)))
    targets = targets.at[0, :4].set(jnp.argmax(logits[0, :4], -1))  # some right answers
    by_argmax = np.sum(np.asarray(jnp.argmax(logits, -1) == targets))
    assert by_argmax >= 4
    np.testing.assert_allclose(losses.weighted_accuracy(logits, targets), [by_argmax, 21.0])
    tied = jnp.array([[2.0, 5.0, 5.0, 1.0]])
    np.testing.assert_allclose(losses.weighted_accuracy(tied, jnp.array([2])), [1.0, 1.0])
    np.testing.assert_allclose(losses.weighted_accuracy(tied, jnp.array([0])), [0.0, 1.0])


def test_bf16_logits_give_fp32_results():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(3, 5, 11)), jnp.float32) * 4
    targets = jnp.asarray(rng.integers(0, 11, size=(3, 5)))
    from_bf16 = losses.weighted_cross_entropy(logits.astype(jnp.bfloat16), targets, None, 0.1)
    from_rounded = losses.weighted_cross_entropy(
        logits.astype(jnp.bfloat16).astype(jnp.float32), targets, None, 0.1
    )
    from_fp32 = losses.weighted_cross_entropy(logits, targets, None, 0.1)
    assert all(x.dtype == jnp.float32 for x in from_bf16)
    np.testing.assert_allclose(from_bf16, from_rounded, rtol=1e-6)  # math ran in fp32
    np.testing.assert_allclose(from_bf16, from_fp32, rtol=1e-2)  # only input rounding differs
    accuracy = losses.weighted_accuracy(logits.astype(jnp.bfloat16), targets)
    assert accuracy[0].dtype == jnp.float32


@pytest.mark.parametrize(
    "logits_shape, weights_shape, label_smoothing, message",
    [
        ((2, 3), (2, 3), 0.0, "logits must be targets.shape"),
        ((2, 3, 5), (2, 4), 0.0, "one weight per target token"),
        ((2, 3, 5), (2, 3), 1.0, "outside"),
    ],
)
def test_bad_loss_inputs_raise(logits_shape, weights_shape, label_smoothing, message):
    with pytest.raises(ValueError, match=message):
        losses.weighted_cross_entropy(
            jnp.zeros(logits_shape), jnp.zeros((2, 3), jnp.int32), jnp.ones(weights_shape),
            label_smoothing,
        )
