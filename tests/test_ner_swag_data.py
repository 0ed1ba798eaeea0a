"""Token classification (CoNLL-2003 NER) and multiple choice (SWAG) data.

A tiny cased vocabulary in which some words split ('rejects' -> reject ##s, 'boycott' ->
boy ##cott, 'Blackburn' -> Black ##burn); sizes are odd (max_seq_length 15, 7, 13).
"""
import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bert_jax.finetuning import ner_data, swag_data
from bert_jax.finetuning.ner_data import CONLL2003_LABELS, Sentence
from bert_jax.tokenization import SPECIAL_TOKENS, FullTokenizer

VOCAB = list(SPECIAL_TOKENS) + [
    "EU", "reject", "##s", "German", "call", "to", "boy", "##cott", "British", "lamb", ".",
    "Peter", "Black", "##burn", "A", "man", "sat", "down", "on", "the", "bench", "He",
    "she", "stood", "up", "walk", "##ed", "away", ","]
PAD, UNK, CLS, SEP = range(4)
L_ID = {t: i for i, t in enumerate(CONLL2003_LABELS)}

CONLL_TEXT = """-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
to TO I-VP O
boycott VB I-VP O
British JJ I-NP I-MISC
lamb NN I-NP O
. . O O


Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- -X- O
EU NNP I-NP B-ORG
"""


@pytest.fixture
def tokenizer(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("".join(t + "\n" for t in VOCAB))
    return FullTokenizer(str(path), do_lower_case=False)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------------------------
# CoNLL reading
# --------------------------------------------------------------------------------------------
def test_read_conll_skips_docstart_and_blank_lines(tmp_path, caplog):
    path = write(tmp_path, "train.txt", CONLL_TEXT)
    with caplog.at_level(logging.INFO, logger=ner_data.__name__):
        sentences = ner_data.read_conll(path)
    assert [s.words for s in sentences] == [
        ("EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."),
        ("Peter", "Blackburn"), ("EU",)]
    assert sentences[0].tags == ("I-ORG", "O", "I-MISC", "O", "O", "O", "I-MISC", "O", "O")
    assert sentences[1].tags == ("I-PER", "I-PER")  # IOB1 kept as it is
    assert sentences[2].tags == ("B-ORG",)
    assert [s.source for s in sentences] == [f"{path}:3", f"{path}:14", f"{path}:17"]
    assert "3 sentences, 12 words; skipped 2 -DOCSTART- lines" in caplog.text


def test_read_conll_crlf_and_tabs(tmp_path):
    path = write(tmp_path, "dev.txt", "EU\tNNP\tI-NP\tI-ORG\r\n\r\nlamb NN I-NP O\r\n")
    assert [(s.words, s.tags) for s in ner_data.read_conll(path)] == [
        (("EU",), ("I-ORG",)), (("lamb",), ("O",))]


def test_read_conll_bad_tag(tmp_path):
    path = write(tmp_path, "bad.txt", "EU NNP I-NP I-ORG\nlamb NN I-NP I-FOOD\n")
    with pytest.raises(ValueError, match=rf"^CoNLL file {path} line 2: tag 'I-FOOD' is not "
                                         r"in the label list O B-PER") as error:
        ner_data.read_conll(path)
    assert "\n" not in str(error.value)


def test_read_conll_bad_columns(tmp_path):
    path = write(tmp_path, "bad.txt", "EU NNP I-NP I-ORG\n\nlamb NN O\n")
    with pytest.raises(ValueError, match=rf"^CoNLL file {path} line 3 has 3 columns, "
                                         r"expected 4") as error:
        ner_data.read_conll(path)
    assert "\n" not in str(error.value)
    # Other column layouts are one argument away.
    path = write(tmp_path, "two.txt", "EU I-ORG\n\nlamb O\n")
    assert [s.tags for s in ner_data.read_conll(path, num_columns=2)] == [("I-ORG",), ("O",)]


def test_read_conll_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="CoNLL file .* does not exist"):
        ner_data.read_conll(str(tmp_path / "nope.txt"))


# --------------------------------------------------------------------------------------------
# Featurizing
# --------------------------------------------------------------------------------------------
def test_labels_on_first_sub_token(tmp_path, tokenizer):
    sentences = ner_data.read_conll(write(tmp_path, "train.txt", CONLL_TEXT))[:1]
    feats = ner_data.featurize_ner(tokenizer, sentences, CONLL2003_LABELS, 15)
    # [CLS] EU reject ##s German call to boy ##cott British lamb . [SEP] [PAD] [PAD]
    pieces = ["[CLS]", "EU", "reject", "##s", "German", "call", "to", "boy", "##cott",
              "British", "lamb", ".", "[SEP]", "[PAD]", "[PAD]"]
    assert feats.num_windows == 1
    assert tokenizer.convert_ids_to_tokens(feats.input_ids[0]) == pieces
    ignored = -1
    assert feats.label_ids[0].tolist() == [
        ignored, L_ID["I-ORG"], L_ID["O"], ignored, L_ID["I-MISC"], L_ID["O"], L_ID["O"],
        L_ID["O"], ignored, L_ID["I-MISC"], L_ID["O"], L_ID["O"], ignored, ignored, ignored]
    assert feats.label_weights[0].tolist() == [0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0]
    assert feats.input_mask[0].tolist() == [1] * 13 + [0] * 2
    assert feats.segment_ids[0].tolist() == [0] * 15
    assert feats.word_index[0].tolist() == [-1, 0, 1, -1, 2, 3, 4, 5, -1, 6, 7, 8, -1, -1, -1]
    assert feats.sentence_index[0].tolist() == [-1, 0, 0, -1] + [0] * 4 + [-1, 0, 0, 0] + [-1] * 3
    inputs = feats.model_inputs()
    assert {k: (v.shape, v.dtype) for k, v in inputs.items()} == {
        "input_ids": ((1, 15), np.int32), "input_mask": ((1, 15), np.int32),
        "segment_ids": ((1, 15), np.int32), "label_ids": ((1, 15), np.int32),
        "label_weights": ((1, 15), np.float32)}


def test_unknown_and_empty_words_still_labelled(tokenizer):
    # 'Zzyzx' is one [UNK]; a zero-width space tokenizes to nothing and becomes [UNK] too.
    sentence = Sentence(("Peter", "Zzyzx", "\u200b", "."), ("I-PER", "I-LOC", "O", "O"), "t")
    feats = ner_data.featurize_ner(tokenizer, [sentence], CONLL2003_LABELS, 9)
    assert feats.input_ids[0].tolist() == [CLS, VOCAB.index("Peter"), UNK, UNK,
                                           VOCAB.index("."), SEP, PAD, PAD, PAD]
    assert feats.word_index[0, 1:5].tolist() == [0, 1, 2, 3]
    assert feats.label_weights[0].sum() == 4


def test_long_sentence_split_into_windows(tokenizer):
    # 8 pieces: Peter | Black ##burn | reject ##s | boy ##cott | . ; room for 5 per window.
    words = ("Peter", "Blackburn", "rejects", "boycott", ".")
    long = Sentence(words, ("I-PER", "I-PER", "O", "O", "O"), "long")
    short = Sentence(("EU",), ("B-ORG",), "short")
    feats = ner_data.featurize_ner(tokenizer, [long, short], CONLL2003_LABELS, 7)
    assert feats.num_windows == 3
    decoded = [tokenizer.convert_ids_to_tokens(row) for row in feats.input_ids]
    assert decoded == [
        ["[CLS]", "Peter", "Black", "##burn", "reject", "##s", "[SEP]"],
        ["[CLS]", "boy", "##cott", ".", "[SEP]", "[PAD]", "[PAD]"],
        ["[CLS]", "EU", "[SEP]", "[PAD]", "[PAD]", "[PAD]", "[PAD]"]]
    # Every word is labelled in exactly one window.
    labelled = [(int(s), int(w)) for s, w in zip(feats.sentence_index[feats.word_index >= 0],
                                                   feats.word_index[feats.word_index >= 0])]
    assert sorted(labelled) == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 0)]
    assert len(labelled) == len(set(labelled))
    assert feats.label_weights.sum() == 6
    # Predicting the gold ids gives back the gold tags, word by word.
    predicted = np.where(feats.label_ids >= 0, feats.label_ids, 0)
    tags = ner_data.tags_from_predictions(feats, predicted, [long, short], CONLL2003_LABELS)
    assert tags == [list(long.tags), list(short.tags)]


def test_word_longer_than_window_keeps_its_head(tokenizer, caplog):
    sentence = Sentence(("Blackburn", "EU"), ("I-PER", "I-ORG"), "s")
    with caplog.at_level(logging.WARNING, logger=ner_data.__name__):
        feats = ner_data.featurize_ner(tokenizer, [sentence], CONLL2003_LABELS, 3)
    assert feats.input_ids.tolist() == [[CLS, VOCAB.index("Black"), SEP],
                                        [CLS, VOCAB.index("EU"), SEP]]
    assert feats.label_ids[:, 1].tolist() == [L_ID["I-PER"], L_ID["I-ORG"]]
    assert "1 words have more than max_seq_length-2=1 pieces" in caplog.text


def test_featurize_errors(tokenizer):
    with pytest.raises(ValueError, match=r"^sentence s word 1 \('EU'\): tag 'B-X' is not"):
        ner_data.featurize_ner(tokenizer, [Sentence(("Peter", "EU"), ("O", "B-X"), "s")],
                               CONLL2003_LABELS, 9)
    with pytest.raises(ValueError, match="leaves no room"):
        ner_data.featurize_ner(tokenizer, [], CONLL2003_LABELS, 2)
    with pytest.raises(ValueError, match="has 2 words but 1 tags"):
        Sentence(("a", "b"), ("O",), "s")


def test_tags_from_predictions_errors(tokenizer):
    sentence = Sentence(("EU",), ("I-ORG",), "s")
    feats = ner_data.featurize_ner(tokenizer, [sentence], CONLL2003_LABELS, 5)
    with pytest.raises(ValueError, match="predictions have shape"):
        ner_data.tags_from_predictions(feats, np.zeros((1, 4)), [sentence], CONLL2003_LABELS)
    with pytest.raises(ValueError, match=r"must be in \[0, 9\)"):
        ner_data.tags_from_predictions(feats, np.full((1, 5), 9), [sentence], CONLL2003_LABELS)
    with pytest.raises(ValueError, match="more than 0 sentences"):
        ner_data.tags_from_predictions(feats, np.zeros((1, 5), int), [], CONLL2003_LABELS)


# --------------------------------------------------------------------------------------------
# Predictions in conlleval format
# --------------------------------------------------------------------------------------------
def test_write_conll_predictions_round_trip(tmp_path):
    sentences = ner_data.read_conll(write(tmp_path, "test.txt", CONLL_TEXT))
    predicted = [["I-ORG", "O", "O", "O", "O", "O", "I-MISC", "O", "O"], ["I-PER", "O"],
                 ["B-ORG"]]
    out = str(tmp_path / "predictions.txt")
    ner_data.write_conll_predictions(out, sentences, predicted)
    text = open(out).read()
    assert text.startswith("EU I-ORG I-ORG\nrejects O O\nGerman I-MISC O\n")
    assert "\n. O O\n\nPeter I-PER I-PER\nBlackburn I-PER O\n\nEU B-ORG B-ORG\n\n" in text
    gold = ner_data.read_conll(out, num_columns=3, tag_column=1)
    pred = ner_data.read_conll(out, num_columns=3, tag_column=2)
    assert [s.words for s in gold] == [s.words for s in sentences]
    assert [s.tags for s in gold] == [s.tags for s in sentences]
    assert [list(s.tags) for s in pred] == predicted


def test_write_conll_predictions_spaces_and_errors(tmp_path):
    out = str(tmp_path / "p.txt")
    ner_data.write_conll_predictions(out, [Sentence(("New York", " "), ("I-LOC", "O"), "s")],
                                     [["I-LOC", "O"]])
    assert open(out).read() == "New_York I-LOC I-LOC\n_ O O\n\n"
    with pytest.raises(ValueError, match="sentence s has 1 words but 2 predicted tags"):
        ner_data.write_conll_predictions(out, [Sentence(("EU",), ("O",), "s")], [["O", "O"]])
    with pytest.raises(ValueError, match="1 sentences but 0 predictions"):
        ner_data.write_conll_predictions(out, [Sentence(("EU",), ("O",), "s")], [])


# --------------------------------------------------------------------------------------------
# TFDS conll2003: the builder's code ships with tensorflow_datasets, so mock_data works offline
# (features and label names from the code; our as_dataset replaces the absent files).
# --------------------------------------------------------------------------------------------
def mock_conll(examples):
    def as_dataset(self, *args, **kwargs):
        def generate():
            for tokens, ner in examples:
                yield {"tokens": tokens, "ner": ner}
        return tf.data.Dataset.from_generator(generate, output_signature={
            "tokens": tf.TensorSpec([None], tf.string), "ner": tf.TensorSpec([None], tf.int64)})
    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


def test_tfds_conll2003_with_mock_data(tmp_path, tokenizer):
    examples = [(["EU", "rejects", "German"], [4, 0, 8]), ([], []), (["Peter"], [1])]
    with mock_conll(examples):
        sentences, labels = ner_data.tfds_sentences("conll2003", "dev", str(tmp_path))
        with pytest.raises(ValueError, match=r"no feature ner_tags \(it has \['chunks', "
                                             r"'ner', 'pos', 'tokens'\]\)"):
            ner_data.tfds_sentences("conll2003", "dev", str(tmp_path), tags_key="ner_tags")
    assert labels == CONLL2003_LABELS
    assert sentences == [
        Sentence(("EU", "rejects", "German"), ("I-ORG", "O", "I-MISC"), "conll2003/dev:0"),
        Sentence(("Peter",), ("B-PER",), "conll2003/dev:2")]
    feats = ner_data.featurize_ner(tokenizer, sentences, labels, 7)
    assert feats.label_ids.tolist() == [[-1, 4, 0, -1, 8, -1, -1], [-1, 1, -1, -1, -1, -1, -1]]
    with mock_conll([(["EU", "lamb"], [4])]):
        with pytest.raises(ValueError, match="conll2003/train:0 has 2 tokens but 1 ner"):
            ner_data.tfds_sentences("conll2003", "train", str(tmp_path))


# --------------------------------------------------------------------------------------------
# SWAG
# --------------------------------------------------------------------------------------------
HEADER = ",video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3"
TRAIN_CSV = HEADER + ",label\n" + (
    '0,anetv_1,5,"A man sat down on the bench. He","A man sat down on the bench.",He,gold,'
    'stood up.,walked away.,sat down.,"stood up, walked away.",3\n'
    '1,lsmdc_2,17,She walked away. she,She walked away.,she,gen,sat.,stood.,walked.,sat up.,0\n'
    '2,lsmdc_3,18,EU boycott lamb. the,EU boycott lamb.,the,gen,man sat.,man stood up.,'
    'man walked.,lamb.,1\n')
TEST_CSV = HEADER + "\n" + "0,anetv_9,4,A man sat. He,A man sat.,He,,sat.,stood.,walked.,ran.\n"


def test_read_swag_train_with_labels(tmp_path):
    examples = swag_data.read_swag_csv(write(tmp_path, "train.csv", TRAIN_CSV))
    assert len(examples) == 3
    first = examples[0]
    assert first.example_id == "5"
    assert first.context == "A man sat down on the bench."
    assert first.choices == ("He stood up.", "He walked away.", "He sat down.",
                             "He stood up, walked away.")
    assert [e.label for e in examples] == [3, 0, 1]


def test_read_swag_test_without_labels(tmp_path):
    path = write(tmp_path, "test.csv", TEST_CSV)
    (example,) = swag_data.read_swag_csv(path)
    assert example.label is None
    assert example.choices == ("He sat.", "He stood.", "He walked.", "He ran.")
    with pytest.raises(ValueError, match=rf"^SWAG file {path} lacks the columns label"):
        swag_data.read_swag_csv(path, has_labels=True)


def test_read_swag_errors(tmp_path):
    bad_label = TRAIN_CSV.replace(",1\n", ",4\n")
    path = write(tmp_path, "bad.csv", bad_label)
    with pytest.raises(ValueError, match=rf"^SWAG file {path} line 4: label '4' is not one "
                                         r"of 0\.\.3\.$"):
        swag_data.read_swag_csv(path)
    path = write(tmp_path, "nolabel.csv", TRAIN_CSV.replace(",0\n", ",\n"))
    with pytest.raises(ValueError, match=r"line 3: label '' is not one of 0\.\.3"):
        swag_data.read_swag_csv(path)
    path = write(tmp_path, "nocol.csv", TRAIN_CSV.replace(",ending3,", ",ending_3,"))
    with pytest.raises(ValueError, match=rf"^SWAG file {path} lacks the columns ending3 "
                                         r"\(its header has  video-id"):
        swag_data.read_swag_csv(path)
    path = write(tmp_path, "short.csv", HEADER + ",label\n0,v,1,s,ctx,start,gold,a,b\n")
    with pytest.raises(ValueError, match=r"line 2 has too few fields \(no ending2 ending3"):
        swag_data.read_swag_csv(path)


def test_multiple_choice_features(tmp_path, tokenizer):
    examples = swag_data.read_swag_csv(write(tmp_path, "train.csv", TRAIN_CSV))
    length = 13
    feats = swag_data.featurize_multiple_choice(tokenizer, examples, length)
    assert {k: (v.shape, v.dtype) for k, v in feats.items()} == {
        "input_ids": ((3, 4, length), np.int32), "input_mask": ((3, 4, length), np.int32),
        "segment_ids": ((3, 4, length), np.int32), "label_ids": ((3,), np.int32)}
    assert feats["label_ids"].tolist() == [3, 0, 1]
    for n, example in enumerate(examples):
        for c, choice in enumerate(example.choices):
            context = tokenizer.tokenize(example.context)
            ending = tokenizer.tokenize(choice)
            while len(context) + len(ending) > length - 3:  # the longer side loses its tail
                (context if len(context) > len(ending) else ending).pop()
            expected = ["[CLS]", *context, "[SEP]", *ending, "[SEP]"]
            size = len(expected)
            ids = feats["input_ids"][n, c]
            assert tokenizer.convert_ids_to_tokens(ids[:size]) == expected
            assert ids[size:].tolist() == [PAD] * (length - size)
            assert feats["input_mask"][n, c].tolist() == [1] * size + [0] * (length - size)
            assert feats["segment_ids"][n, c].tolist() == (
                [0] * (len(context) + 2) + [1] * (len(ending) + 1) + [0] * (length - size))
    # Hand-checked: the first example's last choice, 8 + 8 pieces cut to 5 + 5.
    assert tokenizer.convert_ids_to_tokens(feats["input_ids"][0, 3]) == [
        "[CLS]", "A", "man", "sat", "down", "on", "[SEP]", "He", "stood", "up", ",", "walk",
        "[SEP]"]


def test_multiple_choice_without_labels_and_errors(tmp_path, tokenizer):
    examples = swag_data.read_swag_csv(write(tmp_path, "test.csv", TEST_CSV))
    feats = swag_data.featurize_multiple_choice(tokenizer, examples, 9)
    assert feats["label_ids"].tolist() == [-1]
    assert feats["input_ids"].shape == (1, 4, 9)
    with pytest.raises(ValueError, match="leaves no room"):
        swag_data.featurize_multiple_choice(tokenizer, examples, 4)
    bad = swag_data.MultipleChoiceExample("x", "A man", ("sat", "stood", "ran", "up"), 4)
    with pytest.raises(ValueError, match=r"example x: label 4 is not in 0\.\.3"):
        swag_data.featurize_multiple_choice(tokenizer, [bad], 9)
