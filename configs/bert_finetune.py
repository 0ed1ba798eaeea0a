"""Fine-tuning BERT: classification / regression, SQuAD, NER and multiple choice.

  # The offline demo, from the pretraining main job's workdir: which part of the standard
  # library does a docstring sentence document? (bert_jax/finetuning/topic_demo.py)
  python -m bert_jax.main --config=configs/bert_finetune.py:task=demo \
      --config.init_checkpoint=/tmp/bert --workdir=/tmp/bert_demo_ft
  # GLUE from TensorFlow Datasets (or data.source=files with the original TSVs):
  python -m bert_jax.main --config=configs/bert_finetune.py:task=mrpc \
      --config.init_checkpoint=uncased_L-12_H-768_A-12 --workdir=/tmp/mrpc

Tasks: cola sst2 mrpc qqp stsb mnli qnli rte wnli; demo, demo_pairs and pronoun (built
in, offline);
squad11 / squad20 (TFDS, or the official JSON files with data.source=files,
data.train_file, data.dev_file); conll2003 (TFDS, or CoNLL files with data.source=files);
swag (its CSV files; data.test_file optional); table (your own
tsv/csv/jsonl: data.train_file, dev_file, text_a_column, label_column, label_list or
regression=True).
The BERT paper's fine-tuning recipe: batch 32, lr from {5e-5, 3e-5, 2e-5}, 3 epochs, 10%
linear warmup then linear decay, AdamW with weight decay 0.01 (none on LayerNorm and
biases). The dev set is evaluated every epoch and the best epoch's params (by the task's
main metric) are kept in <workdir>/best.
"""

import ml_collections

from configs import common

GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")


SQUAD = ("squad11", "squad20")
OTHERS = ("conll2003", "swag", "table")
DEMOS = ("demo", "demo_pairs", "pronoun")   # built in, offline (bert_jax/finetuning)
# CoNLL-2003 NER tags in the TFDS order.
CONLL2003_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC",
                    "I-MISC")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    task = common.parse_arg(arg, task="mrpc")["task"]
    if task not in GLUE + SQUAD + OTHERS + DEMOS:
        raise ValueError(f"unknown task {task!r}; choose one of "
                         f"{list(GLUE + SQUAD + OTHERS + DEMOS)}")
    if task in SQUAD:
        return squad_config(task == "squad20")
    if task == "conll2003":
        return ner_config()
    if task == "swag":
        return swag_config()
    if task == "table":
        return table_config()
    c = finetune_base()
    c.data = ml_collections.ConfigDict(dict(
        family="classification",   # read by bert_jax.main: which task class to build
        task={"demo": "stdlib_topic", "demo_pairs": "stdlib_same_module",
              "pronoun": "wnli"}.get(task, task),
        metric_task="",            # "" = the task's own (mnli: mnli_matched on dev_matched)
        source="demo" if task in DEMOS else "tfds",   # tfds | files | demo
        data_dir="", train_split="train",
        eval_split="dev_matched" if task == "mnli" else "dev",
        vocab_file="", do_lower_case=True, max_seq_length=128))
    if task == "mnli":
        c.data.metric_task = "mnli_matched"
    if task in ("demo", "demo_pairs"):   # for BERT-tiny: measured in the README
        c.data.max_seq_length = 64 if task == "demo" else 128
        c.optimizer.learning_rate = 5e-4
        c.num_train_epochs = 10.0 if task == "demo" else 5.0
    if task == "pronoun":
        c.data.max_seq_length = 48
        c.optimizer.learning_rate = 1e-4
    return c


def finetune_base() -> ml_collections.ConfigDict:
    """What every fine-tuning run shares: BERT's recipe, epochs, init_checkpoint."""
    c = common.engine_config()
    c.kind = "finetune"            # read by bert_jax.main: pretraining or fine-tuning
    c.model = ml_collections.ConfigDict(dict(hidden_dropout=0.1, attention_dropout=0.1,
                                             attention_implementation="einsum",
                                             remat="none", scan_layers=False,
                                             dtype="float32", param_dtype="float32"))
    c.init_checkpoint = ""         # required: TF / Hugging Face / pretraining workdir
    c.num_train_epochs = 3.0       # bert_jax.main turns epochs into steps
    c.warmup_fraction = 0.1
    c.optimizer.update(dict(name="adamw", schedule="linear", learning_rate=2e-5,
                            warmup_steps=0, decay_steps=0, b1=0.9, b2=0.999, eps=1e-6,
                            weight_decay=0.01, clip_grad_norm=1.0))
    c.batch_size = 32
    c.eval_batch_size = 64
    c.keep_checkpoints = 2
    c.sweep = False                # True: one run per rate below, the best reported
    c.sweep_learning_rates = (5e-5, 3e-5, 2e-5)   # the BERT paper's grid
    return c


def squad_config(version_2: bool) -> ml_collections.ConfigDict:
    """SQuAD from TFDS or the official JSON files, run_squad.py's settings (seq 384,
    stride 128)."""
    c = finetune_base()
    c.data = ml_collections.ConfigDict(dict(
        family="squad", source="tfds",   # tfds | files (train_file, dev_file)
        tfds_name="squad/v2.0" if version_2 else "squad/v1.1", data_dir="",
        train_split="train", eval_split="validation",
        train_file="", dev_file="", vocab_file="", do_lower_case=True,
        max_seq_length=384, doc_stride=128, max_query_length=64, max_answer_length=30,
        version_2_with_negative=version_2, null_score_diff_threshold=0.0))
    c.optimizer.learning_rate = 3e-5
    c.num_train_epochs = 2.0
    return c


def ner_config() -> ml_collections.ConfigDict:
    """CoNLL-2003 NER: column files (data.source=files) or TFDS conll2003."""
    c = finetune_base()
    c.data = ml_collections.ConfigDict(dict(
        family="ner", source="tfds", tfds_name="conll2003", data_dir="", train_split="train",
        eval_split="dev", train_file="", dev_file="", labels=tuple(CONLL2003_LABELS),
        vocab_file="",
        do_lower_case=True,        # False with a cased checkpoint (NER is usually cased)
        max_seq_length=128))
    c.optimizer.learning_rate = 5e-5
    return c


def swag_config() -> ml_collections.ConfigDict:
    """SWAG multiple choice from its CSV files (train.csv / val.csv)."""
    c = finetune_base()
    c.data = ml_collections.ConfigDict(dict(
        family="multiple_choice", train_file="", dev_file="",
        test_file="",              # optional: test.csv (no labels) -> test_predictions.csv
        vocab_file="",
        do_lower_case=True, max_seq_length=128))
    c.batch_size = 16             # x 4 choices = 64 sequences per step
    return c


def table_config() -> ml_collections.ConfigDict:
    """Your own classification/regression data: .tsv/.csv with a header row, or .jsonl."""
    c = finetune_base()
    c.data = ml_collections.ConfigDict(dict(
        family="classification", source="table", task="table", metric_task="",
        train_file="", dev_file="", test_file="",   # test_file: optional, labels not needed
        text_a_column="", text_b_column="", label_column="",
        label_list=("0", "1"),     # the classes in a fixed order (label ids = positions)
        regression=False,          # True: float labels, mean squared error
        train_split="train", eval_split="dev", vocab_file="", do_lower_case=True,
        max_seq_length=128))
    return c
