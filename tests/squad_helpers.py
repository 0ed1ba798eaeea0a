"""Shared by the SQuAD tests: sizes, the vocabulary, SQuAD JSON builders, featurize."""
import json

from bert_jax.finetuning import squad_data
from bert_jax.tokenization import FullTokenizer

MAX_SEQ_LENGTH, DOC_STRIDE, MAX_QUERY_LENGTH = 17, 3, 5
LONG_WORDS = 37

VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
         + "he she said hello world to me was born in paris france the cat sat on mat "
           "who where when what is it 1895 un ##want ##ed ##s cafe".split()
         + list("(),.!?':") + [f"w{i}" for i in range(LONG_WORDS)])


def make_tokenizer(tmp_path_factory) -> FullTokenizer:
    """The VOCAB above, lower-casing, in a fresh temporary directory."""
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    return FullTokenizer(str(path), do_lower_case=True)


def squad_json(paragraphs, version="v2.0"):
    """[(context, [qa dicts])] -> SQuAD JSON object with one article per two paragraphs."""
    articles = [{"title": f"t{i}", "paragraphs": [{"context": c, "qas": q}
                                                  for c, q in paragraphs[i:i + 2]]}
                for i in range(0, len(paragraphs), 2)]
    return {"version": version, "data": articles}


def write_json(tmp_path, data, name="squad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def qa(qid, question, answers=(), **extra):
    return {"id": qid, "question": question,
            "answers": [{"text": t, "answer_start": s} for t, s in answers], **extra}


BORN = "He was born in Paris, France (1895)."


def at(context, text, occurrence=0):
    """(text, character offset) of the occurrence-th `text` in context."""
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(text, start + 1)
    return text, start


def long_context():
    return " ".join(f"w{i}" for i in range(LONG_WORDS))


def featurize(tokenizer, examples, is_training, **kwargs):
    args = dict(max_seq_length=MAX_SEQ_LENGTH, doc_stride=DOC_STRIDE,
                max_query_length=MAX_QUERY_LENGTH)
    args.update(kwargs)
    return squad_data.convert_examples_to_features(examples, tokenizer,
                                                   is_training=is_training, **args)


def long_example(answer=None, question="what is it ?", impossible=False, qid="long"):
    context = long_context()
    qas = [qa(qid, question, [at(context, answer)] if answer else [],
              is_impossible=impossible)]
    return squad_data.parse_squad_json(squad_json([(context, qas)]), True)[0]
