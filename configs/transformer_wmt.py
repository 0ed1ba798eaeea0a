"""The paper's Transformer on WMT'14 (TFDS), sizes tiny | base | big.

  python -m transformer_jax.main --config=configs/transformer_wmt.py:size=base \
      --workdir=gs://BUCKET/wmt_base

Expected (paper, Table 2): base ~27.3 BLEU on newstest2014 En-De after 100k steps with
~25k source + 25k target tokens per batch on 8 P100s; big ~28.4 after 300k steps.
``size=tiny`` is a 2-layer model for smoke tests.
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """``arg``: ``size=tiny|base|big`` (default base)."""
    return common.translation_config(common.parse_arg(arg, size="base")["size"])
