"""The original GLUE distribution in miniature: per task, files laid out as
download_glue_data.py writes them (rows included), and the Examples the readers must give.

Odd-sized files: CoLA's headerless train/dev, the test files without labels, MNLI's
12/16/10-column files, QQP's malformed rows, unbalanced quotes (read as text under
csv.QUOTE_NONE).
"""
import os

from bert_jax.finetuning import glue_data


def tsv(*rows) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


def write(path, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


# ============================================================================================
# The original GLUE files, one fixture directory per task
# ============================================================================================
MNLI_HEAD = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
             "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
             "sentence2"]
STSB_HEAD = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
             "sentence1", "sentence2"]
MRPC_HEAD = ["#1 ID", "#2 ID", "#1 String", "#2 String"]


def mnli_row(index, premise, hypothesis, *labels):
    return [index, "31193", f"{index}n", "government", "( ( x ) )", "( y )", "(ROOT (S x))",
            "(ROOT (S y))", premise, hypothesis, *labels]


def stsb_row(index, a, b, *score):
    return [index, "main-captions", "MSRvid", "2012test", "0001", "none", "none", a, b, *score]


# task -> {file name: contents}
GLUE_FILES = {
    "cola": {
        "train.tsv": tsv(["gj04", "1", "", "Our friends won't buy this analysis."],
                         ["gj04", "0", "*", "They drank the pub."],
                         ["cj99", "1", "", 'He said "hi.']),
        "dev.tsv": tsv(["gj04", "0", "*", "The more we study verbs, the crazier they get get."]),
        "test.tsv": tsv(["index", "sentence"], ["0", "Bill whistled past the house."],
                        ["1", "She said \"no."], ["2", "The car honked."]),
    },
    "sst2": {
        "train.tsv": tsv(["sentence", "label"], ["hide new secretions ", "0"],
                         ["it 's a charming journey ", "1"], ["the greatest \" musicals ", "1"]),
        "dev.tsv": tsv(["sentence", "label"], ["unflinchingly bleak", "0"]),
        "test.tsv": tsv(["index", "sentence"], ["0", "uneasy mishmash"], ["1", "so nice"]),
    },
    "mrpc": {
        "train.tsv": tsv(["Quality", *MRPC_HEAD],
                         ["1", "702876", "702977", "Amrozi accused his brother .",
                          "Referring to him , Amrozi accused his brother ."],
                         ["0", "2108705", "2108831", "Yucaipa owned Dominick 's .",
                          "Yucaipa bought Dominick 's in 1995 ."],
                         ["1", "1330381", "1330521", "They had published an ad .",
                          "On June 10 , they published an ad ."]),
        "dev.tsv": tsv(["Quality", *MRPC_HEAD],
                       ["1", "1355540", "1355592", "He said \" foo .", "\" Foo , \" he said ."]),
        "test.tsv": tsv(["index", *MRPC_HEAD],
                        ["0", "1089874", "1089925", "PCCW 's chief .", "Current Chief ."],
                        ["1", "3019446", "3019327", "The world 's two .", "Some two ."]),
    },
    "qqp": {
        "train.tsv": tsv(["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                         ["133273", "213221", "213222", "How is the life?", "How is life?",
                          "0"],
                         ["402555", "536040", "536041", "What is a"],    # malformed: a line
                         ["line break?", "What is?", "1"],               # break inside text
                         ["360472", "364011", "490273", "Why?", "Why not?", "1"],
                         ["150662", "155721", "7256", "A?", "B\tC?", "0"]),  # tab in text
        "dev.tsv": tsv(["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                       ["201359", "303345", "303346", "Why are you?", "Why?", "1"]),
        "test.tsv": tsv(["id", "question1", "question2"], ["0", "Is it?", "Is it not?"],
                        ["1", "How?", "Who?"]),
    },
    "stsb": {
        "train.tsv": tsv(STSB_HEAD + ["score"],
                         stsb_row("0", "A plane is taking off.", "An air plane is taking off.",
                                  "5.000"),
                         stsb_row("1", "A man is playing a flute.", "A man plays a flute.",
                                  "3.800"),
                         stsb_row("2", "A man cuts.", "A woman dances.", "0.000")),
        "dev.tsv": tsv(STSB_HEAD + ["score"], stsb_row("0", "A man.", "A man.", "4.25")),
        "test.tsv": tsv(STSB_HEAD, stsb_row("0", "A girl.", "A boy."),
                        stsb_row("1", "A cat.", "A dog.")),
    },
    "mnli": {
        "train.tsv": tsv(MNLI_HEAD + ["label1", "gold_label"],
                         mnli_row("0", "Conceptually cream skimming.", "Product matters.",
                                  "neutral", "neutral"),
                         mnli_row("1", "you know during the season", "You lose the things.",
                                  "entailment", "entailment"),
                         mnli_row("2", "One of our number.", "A member will", "contradiction",
                                  "contradiction")),
        "dev_matched.tsv": tsv(
            MNLI_HEAD + ["label1", "label2", "label3", "label4", "label5", "gold_label"],
            mnli_row("0", "The new rights.", "Everyone loves.", "neutral", "entailment",
                     "neutral", "neutral", "neutral", "neutral")),
        "dev_mismatched.tsv": tsv(
            MNLI_HEAD + ["label1", "label2", "label3", "label4", "label5", "gold_label"],
            mnli_row("0", "Your contribution.", "Not helpful.", "contradiction",
                     "contradiction", "contradiction", "contradiction", "contradiction",
                     "contradiction"),
            mnli_row("1", "Second premise.", "Second hypothesis.", "entailment", "neutral",
                     "entailment", "entailment", "entailment", "entailment")),
        "test_matched.tsv": tsv(MNLI_HEAD, mnli_row("0", "Hierbas.", "Hierbas y ans."),
                                mnli_row("1", "The Gaelic.", "Gaelic.")),
        "test_mismatched.tsv": tsv(MNLI_HEAD, mnli_row("0", "What have you.", "I want.")),
    },
    "qnli": {
        "train.tsv": tsv(["index", "question", "sentence", "label"],
                         ["0", "When?", "In 1999.", "entailment"],
                         ["1", "Who?", "Nobody knows why.", "not_entailment"]),
        "dev.tsv": tsv(["index", "question", "sentence", "label"],
                       ["0", "What?", "This.", "not_entailment"]),
        "test.tsv": tsv(["index", "question", "sentence"], ["0", "Where?", "Here."]),
    },
    "rte": {
        "train.tsv": tsv(["index", "sentence1", "sentence2", "label"],
                         ["0", "No weapons found.", "Weapons found.", "not_entailment"],
                         ["1", "A place of sorrow.", "Pope buried.", "entailment"],
                         ["2", "Herceptin was.", "Herceptin can.", "entailment"]),
        "dev.tsv": tsv(["index", "sentence1", "sentence2", "label"],
                       ["0", "Dana Reeve.", "Reeve died.", "not_entailment"]),
        "test.tsv": tsv(["index", "sentence1", "sentence2"], ["0", "Mangla was.", "Mangla is."],
                        ["1", "Claims.", "Claim."], ["2", "Third.", "3."]),
    },
    "wnli": {
        "train.tsv": tsv(["index", "sentence1", "sentence2", "label"],
                         ["0", "I stuck a pin.", "The pin had a hole.", "1"],
                         ["1", "I stuck a pin.", "The carrot had a hole.", "0"]),
        "dev.tsv": tsv(["index", "sentence1", "sentence2", "label"],
                       ["0", "The drain is clogged.", "The hair is clogged.", "0"]),
        "test.tsv": tsv(["index", "sentence1", "sentence2"], ["0", "Maude.", "Maude did."]),
    },
    "ax": {
        "AX.tsv": tsv(["index", "sentence1", "sentence2"], ["0", "The cat sat.", "The cat did."],
                      ["1", "Cats sat.", "Cats did not."], ["2", "x", "y"]),
    },
}

E, N, C = 0, 1, 2  # MNLI ids: entailment, neutral, contradiction

# task -> split -> [(guid, text_a, text_b, label, index)]
EXPECTED = {
    "cola": {
        "train": [("train-0", "Our friends won't buy this analysis.", None, 1, None),
                  ("train-1", "They drank the pub.", None, 0, None),
                  ("train-2", 'He said "hi.', None, 1, None)],
        "dev": [("dev-0", "The more we study verbs, the crazier they get get.", None, 0, None)],
        "test": [("test-0", "Bill whistled past the house.", None, None, "0"),
                 ("test-1", 'She said "no.', None, None, "1"),
                 ("test-2", "The car honked.", None, None, "2")],
    },
    "sst2": {
        "train": [("train-0", "hide new secretions ", None, 0, None),
                  ("train-1", "it 's a charming journey ", None, 1, None),
                  ("train-2", 'the greatest " musicals ', None, 1, None)],
        "dev": [("dev-0", "unflinchingly bleak", None, 0, None)],
        "test": [("test-0", "uneasy mishmash", None, None, "0"),
                 ("test-1", "so nice", None, None, "1")],
    },
    "mrpc": {
        "train": [("train-0", "Amrozi accused his brother .",
                   "Referring to him , Amrozi accused his brother .", 1, None),
                  ("train-1", "Yucaipa owned Dominick 's .",
                   "Yucaipa bought Dominick 's in 1995 .", 0, None),
                  ("train-2", "They had published an ad .",
                   "On June 10 , they published an ad .", 1, None)],
        "dev": [("dev-0", 'He said " foo .', '" Foo , " he said .', 1, None)],
        "test": [("test-0", "PCCW 's chief .", "Current Chief .", None, "0"),
                 ("test-1", "The world 's two .", "Some two .", None, "1")],
    },
    "qqp": {
        "train": [("train-133273", "How is the life?", "How is life?", 0, "133273"),
                  ("train-360472", "Why?", "Why not?", 1, "360472")],
        "dev": [("dev-201359", "Why are you?", "Why?", 1, "201359")],
        "test": [("test-0", "Is it?", "Is it not?", None, "0"),
                 ("test-1", "How?", "Who?", None, "1")],
    },
    "stsb": {
        "train": [("train-0", "A plane is taking off.", "An air plane is taking off.", 5.0, "0"),
                  ("train-1", "A man is playing a flute.", "A man plays a flute.", 3.8, "1"),
                  ("train-2", "A man cuts.", "A woman dances.", 0.0, "2")],
        "dev": [("dev-0", "A man.", "A man.", 4.25, "0")],
        "test": [("test-0", "A girl.", "A boy.", None, "0"),
                 ("test-1", "A cat.", "A dog.", None, "1")],
    },
    "mnli": {
        "train": [("train-0", "Conceptually cream skimming.", "Product matters.", N, "0"),
                  ("train-1", "you know during the season", "You lose the things.", E, "1"),
                  ("train-2", "One of our number.", "A member will", C, "2")],
        "dev_matched": [("dev_matched-0", "The new rights.", "Everyone loves.", N, "0")],
        "dev_mismatched": [
            ("dev_mismatched-0", "Your contribution.", "Not helpful.", C, "0"),
            ("dev_mismatched-1", "Second premise.", "Second hypothesis.", E, "1")],
        "test_matched": [("test_matched-0", "Hierbas.", "Hierbas y ans.", None, "0"),
                         ("test_matched-1", "The Gaelic.", "Gaelic.", None, "1")],
        "test_mismatched": [("test_mismatched-0", "What have you.", "I want.", None, "0")],
    },
    "qnli": {
        "train": [("train-0", "When?", "In 1999.", 0, "0"),
                  ("train-1", "Who?", "Nobody knows why.", 1, "1")],
        "dev": [("dev-0", "What?", "This.", 1, "0")],
        "test": [("test-0", "Where?", "Here.", None, "0")],
    },
    "rte": {
        "train": [("train-0", "No weapons found.", "Weapons found.", 1, "0"),
                  ("train-1", "A place of sorrow.", "Pope buried.", 0, "1"),
                  ("train-2", "Herceptin was.", "Herceptin can.", 0, "2")],
        "dev": [("dev-0", "Dana Reeve.", "Reeve died.", 1, "0")],
        "test": [("test-0", "Mangla was.", "Mangla is.", None, "0"),
                 ("test-1", "Claims.", "Claim.", None, "1"),
                 ("test-2", "Third.", "3.", None, "2")],
    },
    "wnli": {
        "train": [("train-0", "I stuck a pin.", "The pin had a hole.", 1, "0"),
                  ("train-1", "I stuck a pin.", "The carrot had a hole.", 0, "1")],
        "dev": [("dev-0", "The drain is clogged.", "The hair is clogged.", 0, "0")],
        "test": [("test-0", "Maude.", "Maude did.", None, "0")],
    },
    "ax": {
        "test": [("test-0", "The cat sat.", "The cat did.", None, "0"),
                 ("test-1", "Cats sat.", "Cats did not.", None, "1"),
                 ("test-2", "x", "y", None, "2")],
    },
}


def glue_dir(root, task: str) -> str:
    """Writes the task's fixture files where download_glue_data.py puts them."""
    directory = os.path.join(str(root), glue_data.TASKS[task].glue_dir)
    for name, text in GLUE_FILES[task].items():
        write(os.path.join(directory, name), text)
    return directory


def as_tuples(examples):
    return [(e.guid, e.text_a, e.text_b, e.label, e.index) for e in examples]
