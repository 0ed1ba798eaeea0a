"""A built-in, offline English→German corpus of simple generated sentences.

Written for this project: a small hand-written grammar (`demo_grammar.py`) sampled with a
seeded `random.Random`, so the same seed always gives the same corpus and nothing is
downloaded. Every English sentence has exactly one German translation, which makes the task
fully learnable (a tiny Transformer reaches SacreBLEU >= 90 on the test split), yet it needs
what attention is for: German verb-second and verb-final word order, nominative/accusative
articles and adjective endings, plural agreement, and choosing er/sie/es for "it" by finding
the noun that "it" refers to:

    The animal didn't cross the street because it was too tired.
    Das Tier überquerte die Straße nicht, weil es zu müde war.      (it = the animal, das Tier)
    The animal didn't cross the street because it was too wide.
    Das Tier überquerte die Straße nicht, weil sie zu breit war.    (it = the street, die Straße)

Public API: `generate(seed)`, `write_split_files(directory, seed)`, `LECTURE_EXAMPLES`,
`PRONOUN_TEST_CASES` (held out: always in the test split, never in train) and the sentence
builders `simple_sentence`, `complex_sentence`, `coreference_sentence`.
"""
from __future__ import annotations

import pathlib
import random

from transformer_jax.translation import demo_grammar as g

SPLITS = ("train", "validation", "test")  # the keys of `generate`, in its order
TRAIN_SIZE = 30_000
VALIDATION_SIZE = 500
TEST_SIZE = 500
MIN_WORDS, MAX_WORDS = 3, 20  # English words a sentence, punctuation attached


# --- Sentences ----------------------------------------------------------------------

def _sentence(english: str, german: str) -> tuple[str, str]:
    """Capitalise the first letter and end with a full stop."""
    return english[0].upper() + english[1:] + ".", german[0].upper() + german[1:] + "."


def simple_sentence(clause: g.Clause, time: str | None = None) -> tuple[str, str]:
    """A main clause; a fronted time adverb moves the German verb before the subject."""
    if time is None:
        return _sentence(clause.english, clause.main_order())
    if time not in g.TIME_ADVERBS:
        raise ValueError(f"unknown time adverb {time!r}: choose from {sorted(g.TIME_ADVERBS)}")
    return _sentence(f"{time} {clause.english}", clause.inverted_order(g.TIME_ADVERBS[time][0]))


def complex_sentence(first: g.Clause, connective: str, second: g.Clause) -> tuple[str, str]:
    """Two clauses joined by and/but (main order) or because/although/that (verb-final)."""
    if connective not in g.CONNECTIVES:
        raise ValueError(f"unknown connective {connective!r}: choose from {sorted(g.CONNECTIVES)}")
    german_word, verb_final, english_comma = g.CONNECTIVES[connective]
    english = f"{first.english}{',' if english_comma else ''} {connective} {second.english}"
    german_comma = "" if german_word == "und" else ","  # German commas every clause but "und"
    second_german = second.verb_final_order() if verb_final else second.main_order()
    return _sentence(english, f"{first.main_order()}{german_comma} {german_word} {second_german}")


def coreference_sentence(subject: str, obj: str, adjective: str, tense: str = "past",
                         plural_subject: bool = False) -> tuple[str, str]:
    """"The animal didn't cross the street because it was too tired/wide."

    The adjective decides what "it" refers to: an animate adjective means the subject, a
    place/building adjective the object. German shows the choice in the pronoun's gender.
    """
    if subject not in g.NOUNS_BY_KIND["animal"]:
        raise ValueError(f"a coreference sentence needs an animal subject, got {subject!r}")
    object_kind = g.NOUNS[obj].kind if obj in g.NOUNS else None
    verb = {"place": "cross", "building": "enter"}.get(object_kind)
    if verb is None:
        raise ValueError(f"a coreference sentence needs a place or building object, got {obj!r}")
    subject_phrase = g.noun_phrase(subject, plural=plural_subject)
    object_phrase = g.noun_phrase(obj)
    if adjective in g.COREFERENCE_ADJECTIVES["animate"]:
        antecedent = subject_phrase
    elif adjective in g.COREFERENCE_ADJECTIVES[object_kind]:
        antecedent = object_phrase
    else:
        raise ValueError(f"adjective {adjective!r} fits neither {subject!r} nor {obj!r}")
    main = g.transitive(subject_phrase, verb, object_phrase, tense, negated=True)
    reason = g.predicate(g.pronoun(antecedent), adjective, tense, intensifier="too")
    return complex_sentence(main, "because", reason)


# --- Held-out sentences ---------------------------------------------------------------

_LECTURE_CORE = (("animal", "street", "tired", "past", False),
                 ("animal", "street", "wide", "past", False))
# (subject, object, adjective, tense, plural subject): every gender as antecedent, both as
# subject and as object, for crossing and entering. Train sees other combinations only.
_PRONOUN_CASES = _LECTURE_CORE + (
    ("dog", "river", "wide", "past", False),  # er = der Fluss
    ("cat", "river", "tired", "past", False),  # sie = die Katze
    ("cat", "river", "deep", "past", False),  # er = der Fluss
    ("horse", "bridge", "hungry", "past", False),  # es = das Pferd
    ("horse", "bridge", "long", "past", False),  # sie = die Brücke
    ("mouse", "field", "scared", "past", False),  # sie = die Maus
    ("mouse", "field", "muddy", "past", False),  # es = das Feld
    ("fox", "valley", "steep", "past", False),  # es = das Tal
    ("fox", "meadow", "sleepy", "past", False),  # er = der Fuchs
    ("duck", "square", "busy", "present", False),  # er = der Platz
    ("pig", "stream", "weak", "present", False),  # es = das Schwein
    ("owl", "highway", "slippery", "present", False),  # sie = die Autobahn
    ("bird", "house", "scared", "past", False),  # er = der Vogel
    ("bird", "house", "dark", "past", False),  # es = das Haus
    ("goat", "tunnel", "narrow", "past", False),  # er = der Tunnel
    ("goat", "tunnel", "nervous", "past", False),  # sie = die Ziege
    ("chicken", "barn", "dirty", "present", False),  # sie = die Scheune
    ("wolf", "cave", "exhausted", "present", False),  # er = der Wolf
    ("dog", "street", "tired", "past", True),  # sie = die Hunde
    ("cow", "river", "wide", "past", True),  # er = der Fluss, not the cows
)
PRONOUN_TEST_CASES: list[tuple[str, str]] = [coreference_sentence(*case) for case in _PRONOUN_CASES]
LECTURE_EXAMPLES: list[tuple[str, str]] = [
    simple_sentence(g.transitive(g.name_phrase("Tom"), "chase", g.name_phrase("Jerry"))),
    *(coreference_sentence(*case) for case in _LECTURE_CORE),
]
# Always in the test split, never sampled into train or validation.
_HELD_OUT = list(dict.fromkeys(LECTURE_EXAMPLES + PRONOUN_TEST_CASES))


# --- Random sampling --------------------------------------------------------------------

# Relative frequency of each sentence shape; coreference is frequent so the rule is learnt.
_SHAPE_WEIGHTS = {"transitive": 22, "intransitive": 12, "predicate": 12, "coordinated": 10,
                  "subordinate": 10, "reported": 10, "coreference": 24}


class _Sampler:
    """Draws random structures from the grammar with one seeded `random.Random`."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.shapes = list(_SHAPE_WEIGHTS)
        self.shape_weights = list(_SHAPE_WEIGHTS.values())

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def maybe(self, probability: float, options):
        """A random element of `options` with the given probability, else None (or if empty)."""
        options = tuple(options)
        return self.rng.choice(options) if options and self.chance(probability) else None

    def noun_phrase(self, kinds, allow_indefinite: bool = True) -> g.NounPhrase:
        if "person" in kinds and self.chance(0.3):
            return g.name_phrase(self.rng.choice(g.NAMES))
        noun = g.NOUNS[self.rng.choice(g.NOUNS_BY_KIND[self.rng.choice(kinds)])]
        plural = self.chance(0.3)
        definite = plural or not allow_indefinite or self.chance(0.8)
        adjective = self.maybe(0.2, g.ATTRIBUTIVE_ADJECTIVES[noun.kind])
        return g.noun_phrase(noun.english, plural, definite, adjective)

    def subject(self, kinds) -> g.NounPhrase:
        if self.chance(0.08):
            kind = self.rng.choice([k for k in kinds if k in ("animal", "person")])
            first, second = self.noun_phrase([kind]), self.noun_phrase([kind])
            if first.english != second.english:  # no "Tom and Tom"
                return g.compound_phrase(first, second)
        return self.noun_phrase(kinds)

    def transitive(self, tense: str) -> g.Clause:
        verb = g.TRANSITIVE_VERBS[self.rng.choice(tuple(g.TRANSITIVE_VERBS))]
        negated = self.chance(0.2)
        frequency = None if negated else self.maybe(0.15, g.FREQUENCY_ADVERBS)
        obj = self.noun_phrase(verb.object_kinds, allow_indefinite=not (negated or frequency))
        return g.transitive(self.subject(verb.subject_kinds), verb.base, obj, tense, negated,
                            frequency, self.maybe(0.2, g.PLACE_PHRASES))

    def intransitive(self, tense: str) -> g.Clause:
        verb = g.INTRANSITIVE_VERBS[self.rng.choice(tuple(g.INTRANSITIVE_VERBS))]
        negated = self.chance(0.2)
        frequency = None if negated else self.maybe(0.2, g.FREQUENCY_ADVERBS)
        return g.intransitive(self.subject(verb.subject_kinds), verb.base, tense, negated,
                              frequency, self.maybe(0.35, g.MANNER_ADVERBS),
                              self.maybe(0.4, g.PLACE_PHRASES))

    def predicate(self, tense: str) -> g.Clause:
        subject = self.subject(g.KINDS)
        negated = self.chance(0.2)
        frequency = None if negated else self.maybe(0.1, g.FREQUENCY_ADVERBS)
        adjectives = g.PREDICATE_ADJECTIVES[g.ADJECTIVE_GROUP[subject.kind]]
        return g.predicate(subject, self.rng.choice(adjectives), tense, negated, frequency,
                           self.maybe(0.3, g.INTENSIFIERS))

    def clause(self) -> g.Clause:
        make = self.rng.choice((self.transitive, self.intransitive, self.predicate))
        return make(self.rng.choice(g.TENSES))

    def simple(self, shape: str) -> tuple[str, str]:
        tense = self.rng.choice(g.TENSES)
        times = [t for t, (_, tenses) in g.TIME_ADVERBS.items() if tense in tenses]
        return simple_sentence(getattr(self, shape)(tense), self.maybe(0.2, times))

    def coreference(self) -> tuple[str, str]:
        obj = self.rng.choice(g.NOUNS_BY_KIND["place"] + g.NOUNS_BY_KIND["building"])
        group = "animate" if self.chance(0.5) else g.NOUNS[obj].kind
        return coreference_sentence(self.rng.choice(g.NOUNS_BY_KIND["animal"]), obj,
                                    self.rng.choice(g.COREFERENCE_ADJECTIVES[group]),
                                    self.rng.choice(g.TENSES), self.chance(0.25))

    def sentence(self) -> tuple[str, str]:
        shape = self.rng.choices(self.shapes, self.shape_weights)[0]
        if shape in ("transitive", "intransitive", "predicate"):
            return self.simple(shape)
        if shape == "coordinated":
            return complex_sentence(self.clause(), self.rng.choice(("and", "but")), self.clause())
        if shape == "subordinate":
            return complex_sentence(self.clause(), self.rng.choice(("because", "although")),
                                    self.clause())
        if shape == "reported":
            reporter = self.subject(["person"])
            verb = self.rng.choice(tuple(g.REPORTING_VERBS))
            first = g.reporting(reporter, verb, self.rng.choice(g.TENSES))
            return complex_sentence(first, "that", self.clause())
        return self.coreference()


def _fresh_pairs(rng: random.Random, count: int, exclude: set[str]) -> list[tuple[str, str]]:
    """`count` random pairs with distinct English sides, none of them in `exclude`."""
    sampler, seen, pairs = _Sampler(rng), set(exclude), []
    for _ in range(count * 20):  # a guard: the grammar yields millions of distinct sentences
        english, german = sampler.sentence()
        if english not in seen and MIN_WORDS <= len(english.split()) <= MAX_WORDS:
            seen.add(english)
            pairs.append((english, german))
            if len(pairs) == count:
                return pairs
    raise RuntimeError(f"demo grammar yielded only {len(pairs)} distinct sentences of {count}")


def generate(seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """The corpus as {"train", "validation", "test"} -> [(english, german), ...].

    Deterministic in `seed`. English sentences are unique across all splits; the test split
    starts with `LECTURE_EXAMPLES` and `PRONOUN_TEST_CASES`, which never occur in train.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"demo corpus seed must be an int, got {seed!r}")
    held_out_count = len(_HELD_OUT)
    fresh = _fresh_pairs(random.Random(seed), TRAIN_SIZE + VALIDATION_SIZE + TEST_SIZE
                         - held_out_count, {english for english, _ in _HELD_OUT})
    test_end = VALIDATION_SIZE + TEST_SIZE - held_out_count
    test = _HELD_OUT + fresh[VALIDATION_SIZE:test_end]
    return dict(zip(SPLITS, (fresh[test_end:], fresh[:VALIDATION_SIZE], test)))


def write_split_files(directory, seed: int = 0) -> dict[str, tuple[str, str]]:
    """Writes line-aligned UTF-8 `{split}.en` / `{split}.de` files; returns their paths."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, pairs in generate(seed).items():
        for index, suffix in enumerate(("en", "de")):
            path = directory / f"{split}.{suffix}"
            path.write_text("".join(pair[index] + "\n" for pair in pairs), encoding="utf-8")
        paths[split] = (str(directory / f"{split}.en"), str(directory / f"{split}.de"))
    return paths


def resolved_pronoun(german: str) -> str | None:
    """The German pronoun that translates "it"/"they": the word right after "weil"."""
    words = german.replace(",", " ").split()
    return words[words.index("weil") + 1] if "weil" in words[:-1] else None


def pronoun_accuracy(hypotheses: list[str], references: list[str]) -> float:
    """Fraction of it-sentences whose translation picks the reference's er / sie / es."""
    if len(hypotheses) != len(references) or not references:
        raise ValueError("pronoun_accuracy needs one hypothesis per reference")
    hits = sum(resolved_pronoun(h) == resolved_pronoun(r) for h, r in zip(hypotheses, references))
    return hits / len(references)
