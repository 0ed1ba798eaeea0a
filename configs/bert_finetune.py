"""Fine-tuning BERT on a sentence(-pair) classification or regression task.

  # The offline demo: a WNLI-style pronoun task, from the pretraining main job's workdir.
  python -m bert_jax.main --config=configs/bert_finetune.py:task=demo \
      --config.init_checkpoint=/tmp/bert --workdir=/tmp/bert_demo_ft
  # GLUE from TensorFlow Datasets (or data.source=files with the original TSVs):
  python -m bert_jax.main --config=configs/bert_finetune.py:task=mrpc \
      --config.init_checkpoint=uncased_L-12_H-768_A-12 --workdir=/tmp/mrpc

Tasks: cola sst2 mrpc qqp stsb mnli qnli rte wnli, and demo. The BERT paper's fine-tuning
recipe: batch 32, lr from {5e-5, 3e-5, 2e-5}, 3 epochs, 10% linear warmup then linear decay,
AdamW with weight decay 0.01 (none on LayerNorm and biases). The dev set is evaluated every
epoch and the best epoch's params (by the task's main metric) are kept in <workdir>/best.
"""

import ml_collections

from configs import common

GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    task = common.parse_arg(arg, task="mrpc")["task"]
    if task not in GLUE + ("demo",):
        raise ValueError(f"unknown task {task!r}; choose one of {list(GLUE) + ['demo']}")
    c = common.engine_config()
    c.kind = "finetune"            # read by bert_jax.main: which task class to build
    c.model = ml_collections.ConfigDict(dict(hidden_dropout=0.1, attention_dropout=0.1,
                                             dtype="float32", param_dtype="float32"))
    c.data = ml_collections.ConfigDict(dict(
        task="wnli" if task == "demo" else task,
        metric_task="",            # "" = the task's own (mnli: mnli_matched on dev_matched)
        source="demo" if task == "demo" else "tfds",   # tfds | files | demo
        data_dir="", train_split="train",
        eval_split="dev_matched" if task == "mnli" else "dev",
        vocab_file="", do_lower_case=True, max_seq_length=128))
    if task == "mnli":
        c.data.metric_task = "mnli_matched"
    c.init_checkpoint = ""         # required: TF / Hugging Face / pretraining workdir
    c.num_train_epochs = 3.0       # bert_jax.main turns epochs into steps
    c.warmup_fraction = 0.1
    c.optimizer.update(dict(name="adamw", schedule="linear", learning_rate=2e-5,
                            warmup_steps=0, decay_steps=0, b1=0.9, b2=0.999, eps=1e-6,
                            weight_decay=0.01, clip_grad_norm=1.0))
    c.batch_size = 32
    c.eval_batch_size = 64
    c.keep_checkpoints = 2
    if task == "demo":
        c.data.max_seq_length = 48
        c.optimizer.learning_rate = 1e-4   # a 2-layer model fine-tunes faster at a higher rate
    return c
