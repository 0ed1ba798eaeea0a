"""The built-in English→German demo corpus: determinism, splits, and hand-checked German."""
import time

import pytest

from transformer_jax.translation import demo_corpus
from transformer_jax.translation import demo_grammar as g


@pytest.fixture(scope="module")
def corpus():
    return demo_corpus.generate(seed=0)


def _english(pairs):
    return [english for english, _ in pairs]


def test_generate_is_deterministic_and_fast(corpus):
    start = time.process_time()  # CPU time: other jobs on the machine do not count
    again = demo_corpus.generate(seed=0)
    assert time.process_time() - start < 2.0
    assert again == corpus
    assert demo_corpus.generate(seed=1)["train"] != corpus["train"]


def test_generate_does_not_touch_global_random_state():
    import random
    random.seed(123)
    expected = random.random()
    random.seed(123)
    demo_corpus.generate(seed=3)
    assert random.random() == expected


def test_split_sizes(corpus):
    assert set(corpus) == {"train", "validation", "test"}
    assert 20_000 <= len(corpus["train"]) <= 40_000
    assert len(corpus["validation"]) == demo_corpus.VALIDATION_SIZE == 500
    assert len(corpus["test"]) == demo_corpus.TEST_SIZE == 500


def test_splits_are_deduplicated_and_disjoint(corpus):
    sets = {split: set(_english(pairs)) for split, pairs in corpus.items()}
    for split, pairs in corpus.items():
        assert len(sets[split]) == len(pairs), f"duplicate English sentence in {split}"
    assert not sets["train"] & sets["test"]
    assert not sets["train"] & sets["validation"]
    assert not sets["validation"] & sets["test"]


def test_translation_is_one_to_one_within_each_split(corpus):
    for split, pairs in corpus.items():
        assert len({german for _, german in pairs}) == len(pairs), split


def test_sentences_are_well_formed(corpus):
    for pairs in corpus.values():
        for english, german in pairs:
            assert 3 <= len(english.split()) <= 20, english
            assert english[0].isupper() and german[0].isupper(), (english, german)
            assert english.endswith(".") and german.endswith("."), (english, german)
            assert "\n" not in english + german and "  " not in english + german


def test_lecture_examples_are_held_out_in_test(corpus):
    assert demo_corpus.LECTURE_EXAMPLES == [
        ("Tom chases Jerry.", "Tom jagt Jerry."),
        ("The animal didn't cross the street because it was too tired.",
         "Das Tier überquerte die Straße nicht, weil es zu müde war."),
        ("The animal didn't cross the street because it was too wide.",
         "Das Tier überquerte die Straße nicht, weil sie zu breit war."),
    ]
    held_out = demo_corpus.LECTURE_EXAMPLES + demo_corpus.PRONOUN_TEST_CASES
    train = set(_english(corpus["train"])) | set(_english(corpus["validation"]))
    test = set(corpus["test"])
    for pair in held_out:
        assert pair in test
        assert pair[0] not in train


def test_train_teaches_the_pronoun_rule_with_other_combinations(corpus):
    """Held-out pronoun cases must be learnable from many other it-sentences in train."""
    train_german = [german for english, german in corpus["train"]
                    if "because it was too" in english or "because it is too" in english]
    assert len(train_german) > 2000
    for pronoun in ("weil er zu", "weil sie zu", "weil es zu"):
        assert sum(pronoun in german for german in train_german) > 300, pronoun


def test_pronoun_test_cases_cover_every_gender_both_ways():
    pronouns = [german.split(", weil ")[1].split()[0] for _, german in
                demo_corpus.PRONOUN_TEST_CASES]
    assert set(pronouns) == {"er", "sie", "es"}
    assert len(set(demo_corpus.PRONOUN_TEST_CASES)) == len(demo_corpus.PRONOUN_TEST_CASES)


@pytest.mark.parametrize("case, expected", [
    # The pronoun follows the antecedent chosen by the adjective, and that noun's gender.
    (("dog", "river", "wide"),
     ("The dog didn't cross the river because it was too wide.",
      "Der Hund überquerte den Fluss nicht, weil er zu breit war.")),
    (("cat", "river", "tired"),
     ("The cat didn't cross the river because it was too tired.",
      "Die Katze überquerte den Fluss nicht, weil sie zu müde war.")),
    (("horse", "bridge", "hungry"),
     ("The horse didn't cross the bridge because it was too hungry.",
      "Das Pferd überquerte die Brücke nicht, weil es zu hungrig war.")),
    (("mouse", "field", "muddy", "present"),
     ("The mouse doesn't cross the field because it is too muddy.",
      "Die Maus überquert das Feld nicht, weil es zu schlammig ist.")),
    (("bird", "tunnel", "dark"),
     ("The bird didn't enter the tunnel because it was too dark.",
      "Der Vogel betrat den Tunnel nicht, weil er zu dunkel war.")),
    (("cow", "street", "wide", "past", True),
     ("The cows didn't cross the street because it was too wide.",
      "Die Kühe überquerten die Straße nicht, weil sie zu breit war.")),
    (("pig", "river", "scared", "present", True),
     ("The pigs don't cross the river because they are too scared.",
      "Die Schweine überqueren den Fluss nicht, weil sie zu ängstlich sind.")),
])
def test_coreference_sentences(case, expected):
    assert demo_corpus.coreference_sentence(*case) == expected


def _simple(subject, verb, obj, **kwargs):
    return demo_corpus.simple_sentence(g.transitive(subject, verb, obj, **kwargs))


def test_nominative_and_accusative_articles():
    dog, cat, horse = g.noun_phrase("dog"), g.noun_phrase("cat"), g.noun_phrase("horse")
    assert _simple(dog, "see", cat) == ("The dog sees the cat.", "Der Hund sieht die Katze.")
    assert _simple(cat, "see", dog) == ("The cat sees the dog.", "Die Katze sieht den Hund.")
    assert _simple(horse, "see", horse) == ("The horse sees the horse.",
                                            "Das Pferd sieht das Pferd.")
    a_big_dog = g.noun_phrase("dog", definite=False, adjective="big")
    an_old_cat = g.noun_phrase("cat", definite=False, adjective="old")
    assert _simple(a_big_dog, "chase", g.noun_phrase("dog", adjective="small")) == (
        "A big dog chases the small dog.", "Ein großer Hund jagt den kleinen Hund.")
    assert _simple(an_old_cat, "find", a_big_dog, tense="past") == (
        "An old cat found a big dog.", "Eine alte Katze fand einen großen Hund.")


def test_plural_and_compound_subjects_take_plural_verbs():
    dogs = g.noun_phrase("dog", plural=True, adjective="tired")
    assert _simple(dogs, "chase", g.noun_phrase("mouse", plural=True)) == (
        "The tired dogs chase the mice.", "Die müden Hunde jagen die Mäuse.")
    tom_and_anna = g.compound_phrase(g.name_phrase("Tom"), g.name_phrase("Anna"))
    assert _simple(tom_and_anna, "feed", g.noun_phrase("horse"), tense="past") == (
        "Tom and Anna fed the horse.", "Tom und Anna fütterten das Pferd.")


def test_negation_frequency_and_fronted_time_adverb():
    dog, cat = g.noun_phrase("dog"), g.noun_phrase("cat")
    assert _simple(dog, "bite", cat, negated=True) == (
        "The dog doesn't bite the cat.", "Der Hund beißt die Katze nicht.")
    assert _simple(dog, "chase", cat, frequency="often", place="in the garden") == (
        "The dog often chases the cat in the garden.",
        "Der Hund jagt die Katze oft im Garten.")
    clause = g.transitive(g.name_phrase("Tom"), "chase", g.name_phrase("Jerry"), "past")
    assert demo_corpus.simple_sentence(clause, time="yesterday") == (
        "Yesterday Tom chased Jerry.", "Gestern jagte Tom Jerry.")


def test_subordinate_clauses_are_verb_final():
    tom = g.name_phrase("Tom")
    report = g.reporting(tom, "say")
    chase = g.transitive(g.noun_phrase("dog"), "chase", g.noun_phrase("cat"), negated=True)
    assert demo_corpus.complex_sentence(report, "that", chase) == (
        "Tom says that the dog doesn't chase the cat.",
        "Tom sagt, dass der Hund die Katze nicht jagt.")
    sleep = g.intransitive(g.noun_phrase("bird", plural=True), "sleep", "past", manner="quietly")
    hungry = g.predicate(g.noun_phrase("cat"), "hungry", intensifier="very")
    assert demo_corpus.complex_sentence(sleep, "because", hungry) == (
        "The birds slept quietly because the cat is very hungry.",
        "Die Vögel schliefen leise, weil die Katze sehr hungrig ist.")
    assert demo_corpus.complex_sentence(hungry, "but", sleep) == (
        "The cat is very hungry, but the birds slept quietly.",
        "Die Katze ist sehr hungrig, aber die Vögel schliefen leise.")


@pytest.mark.parametrize("build, message", [
    (lambda: g.noun_phrase("unicorn"), "unknown demo noun 'unicorn'"),
    (lambda: g.noun_phrase("dog", plural=True, definite=False), "singular only"),
    (lambda: g.transitive(g.noun_phrase("dog"), "feed", g.noun_phrase("cat")),
     "verb 'feed' takes no animal as subject"),
    (lambda: g.transitive(g.noun_phrase("dog"), "chase",
                          g.noun_phrase("cat", definite=False), negated=True), "indefinite"),
    (lambda: demo_corpus.coreference_sentence("dog", "river", "dark"), "fits neither"),
    (lambda: g.predicate(g.noun_phrase("dog"), "tired", tense="future"), "unknown tense"),
])
def test_bad_structures_raise_clear_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_seed_raises():
    with pytest.raises(TypeError, match="seed must be an int"):
        demo_corpus.generate(seed="0")


def test_write_split_files_are_line_aligned(tmp_path, corpus):
    paths = demo_corpus.write_split_files(tmp_path / "demo", seed=0)
    assert set(paths) == set(corpus)
    for split, (path_en, path_de) in paths.items():
        with open(path_en, encoding="utf-8") as f_en, open(path_de, encoding="utf-8") as f_de:
            lines = list(zip(f_en.read().splitlines(), f_de.read().splitlines(), strict=True))
        assert lines == corpus[split]
    assert (tmp_path / "demo" / "test.de").read_text(encoding="utf-8").splitlines()[1] == (
        "Das Tier überquerte die Straße nicht, weil es zu müde war.")


def test_pronoun_accuracy_scores_the_resolved_pronoun():
    """Only the pronoun after 'weil' counts; a wrong gender is a miss."""
    refs = ["Das Tier überquerte die Straße nicht, weil es zu müde war.",
            "Das Tier überquerte die Straße nicht, weil sie zu breit war."]
    hyps = ["Das Tier überquerte die Straße nicht, weil es zu müde war.",
            "Das Tier überquerte die Straße nicht, weil es zu breit war."]
    assert demo_corpus.resolved_pronoun(refs[1]) == "sie"
    assert demo_corpus.resolved_pronoun("Tom jagt Jerry.") is None
    assert demo_corpus.pronoun_accuracy(hyps, refs) == 0.5
    assert demo_corpus.pronoun_accuracy(refs, refs) == 1.0
