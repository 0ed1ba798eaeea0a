"""The paper's Transformer on WMT'14 (TFDS), sizes tiny | base | big.

  python -m transformer_jax.main --config=configs/transformer_wmt.py:size=base \
      --workdir=gs://BUCKET/wmt_base

Expected (paper, Table 2): base ~27.3 BLEU on newstest2014 En-De after 100k steps with
~25k source + 25k target tokens per batch on 8 P100s; big ~28.4 after 300k steps.
``size=tiny`` is a 2-layer model for smoke tests.
"""

import ml_collections

from configs import common

SIZES = {
    "tiny": dict(d_model=64, num_heads=4, d_ff=128, num_encoder_layers=2, num_decoder_layers=2,
                 dropout_rate=0.1),
    "base": dict(d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6,
                 num_decoder_layers=6, dropout_rate=0.1),
    "big": dict(d_model=1024, num_heads=16, d_ff=4096, num_encoder_layers=6,
                num_decoder_layers=6, dropout_rate=0.3),
}


def model_config(size: str) -> ml_collections.ConfigDict:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {list(SIZES)}")
    m = ml_collections.ConfigDict(dict(
        d_model=512, num_heads=8, head_dim=None, d_ff=2048, num_encoder_layers=6,
        num_decoder_layers=6, dropout_rate=0.1, attention_dropout_rate=0.0, max_len=512,
        share_embeddings=True, tie_output=True, pre_layer_norm=False, activation="relu",
        attention_bias=False, layer_norm_epsilon=1e-6, dtype="float32",
        param_dtype="float32"))
    m.update(SIZES[size])
    return m


def translation_config(size: str) -> ml_collections.ConfigDict:
    """Everything a translation run reads, with the paper's recipe."""
    c = common.engine_config()
    c.model = model_config(size)
    c.label_smoothing = 0.1
    c.data = ml_collections.ConfigDict(dict(
        source="tfds", tfds_name="wmt14_translate/de-en", source_lang="en", target_lang="de",
        data_dir="", train_split="train", eval_split="validation", test_split="test",
        train_source="", train_target="", train_tsv="", eval_source="", eval_target="",
        eval_tsv="", test_source="", test_target="", test_tsv="",
        vocab_path="", vocab_size=32000, max_source_length=256, max_target_length=256,
        pack=True, shuffle_buffer=65536))
    c.predict = ml_collections.ConfigDict(dict(
        beam_size=4, alpha=0.6, extra_length=50, max_decode_len=256, bleu_split="eval",
        num_bleu_examples=0))
    c.batch_size = 256
    c.num_train_steps = 100_000 if size != "big" else 300_000
    c.checkpoint_every = 2000
    c.eval_every = 5000
    c.keep_checkpoints = 20
    return c


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """``arg``: ``size=tiny|base|big`` (default base)."""
    return translation_config(common.parse_arg(arg, size="base")["size"])
