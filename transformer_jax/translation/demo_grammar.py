"""Lexicon and grammar of the built-in English→German demo corpus.

Every function here is deterministic: one structured choice (which nouns, which verb, tense,
negation, ...) gives exactly one English and one German sentence, so the corpus is a function
the model can learn perfectly. Randomness lives in `demo_corpus.py`.

German is built in topological fields, which is all this grammar needs: a `Clause` holds the
subject, the finite verb and the "middle field" (objects, adverbs, `nicht`, places). A main
clause is subject-verb-middle, a clause after a fronted time adverb is verb-subject-middle,
and a clause after weil/obwohl/dass is subject-middle-verb (verb-final). Only simple tenses
are used, so there are never separable prefixes or participles to place.

Kinds of noun: animal, person (names too), thing, place (can be crossed) and building (can
be entered). Predicate adjectives are shared by animals and persons (the "animate" group).
"""
from __future__ import annotations

import dataclasses

TENSES = ("present", "past")


@dataclasses.dataclass(frozen=True)
class Noun:
    english: str
    english_plural: str
    gender: str  # "m", "f" or "n"
    german: str
    german_plural: str
    kind: str  # animal, person, thing, place or building


@dataclasses.dataclass(frozen=True)
class Verb:
    base: str  # English infinitive, also the plural present form: "chase"
    third_person: str  # "chases"
    past: str  # "chased"
    german_singular: str  # 3rd person singular present: "jagt"
    german_plural: str  # 3rd person plural present: "jagen"
    german_past_singular: str  # "jagte"
    german_past_plural: str  # "jagten"
    subject_kinds: tuple[str, ...]
    object_kinds: tuple[str, ...]  # empty for intransitive and reporting verbs


def _parse_nouns(kind: str, table: str) -> dict[str, Noun]:
    """One noun a line: `english english_plural gender German German_plural`."""
    rows = (line.split() for line in table.strip().splitlines())
    return {row[0]: Noun(*row, kind=kind) for row in rows}


def _parse_verbs(table: str) -> dict[str, Verb]:
    """One verb a line: `English forms | German forms | subject kinds | object kinds`."""
    verbs = {}
    for line in table.strip().splitlines():
        english, german, subjects, *objects = (part.split() for part in line.split("|"))
        objects = tuple(objects[0]) if objects else ()
        verbs[english[0]] = Verb(*english, *german, tuple(subjects), objects)
    return verbs


def _parse_pairs(table: str) -> dict[str, str]:
    """`english = German` entries separated by `|` or line breaks."""
    entries = (entry for entry in table.replace("\n", "|").split("|") if entry.strip())
    return dict(tuple(part.strip() for part in entry.split("=")) for entry in entries)


NAMES = tuple("Tom Jerry Anna Max Lisa Paul Emma Ben Mia Leon Sarah Felix Lena Jonas".split())

NOUNS: dict[str, Noun] = {
    **_parse_nouns("animal", """
        dog dogs m Hund Hunde
        cat cats f Katze Katzen
        horse horses n Pferd Pferde
        bird birds m Vogel Vögel
        mouse mice f Maus Mäuse
        animal animals n Tier Tiere
        cow cows f Kuh Kühe
        fox foxes m Fuchs Füchse
        rabbit rabbits n Kaninchen Kaninchen
        wolf wolves m Wolf Wölfe
        duck ducks f Ente Enten
        pig pigs n Schwein Schweine
        goat goats f Ziege Ziegen
        donkey donkeys m Esel Esel
        chicken chickens n Huhn Hühner
        owl owls f Eule Eulen
        frog frogs m Frosch Frösche
        lamb lambs n Lamm Lämmer"""),
    **_parse_nouns("person", """
        child children n Kind Kinder
        girl girls n Mädchen Mädchen
        teacher teachers m Lehrer Lehrer
        doctor doctors m Arzt Ärzte
        man men m Mann Männer
        woman women f Frau Frauen
        friend friends m Freund Freunde
        sister sisters f Schwester Schwestern
        brother brothers m Bruder Brüder
        king kings m König Könige
        queen queens f Königin Königinnen"""),
    **_parse_nouns("thing", """
        ball balls m Ball Bälle
        apple apples m Apfel Äpfel
        bone bones m Knochen Knochen
        cake cakes m Kuchen Kuchen
        key keys m Schlüssel Schlüssel
        letter letters m Brief Briefe
        book books n Buch Bücher
        egg eggs n Ei Eier
        picture pictures n Bild Bilder
        toy toys n Spielzeug Spielzeuge
        bag bags f Tasche Taschen
        box boxes f Kiste Kisten
        bottle bottles f Flasche Flaschen
        cup cups f Tasse Tassen
        flower flowers f Blume Blumen"""),
    **_parse_nouns("place", """
        street streets f Straße Straßen
        bridge bridges f Brücke Brücken
        meadow meadows f Wiese Wiesen
        highway highways f Autobahn Autobahnen
        gorge gorges f Schlucht Schluchten
        river rivers m Fluss Flüsse
        square squares m Platz Plätze
        stream streams m Bach Bäche
        path paths m Weg Wege
        lake lakes m See Seen
        yard yards m Hof Höfe
        field fields n Feld Felder
        valley valleys n Tal Täler
        track tracks n Gleis Gleise
        moor moors n Moor Moore"""),
    **_parse_nouns("building", """
        barn barns f Scheune Scheunen
        cave caves f Höhle Höhlen
        kitchen kitchens f Küche Küchen
        church churches f Kirche Kirchen
        tunnel tunnels m Tunnel Tunnel
        shed sheds m Schuppen Schuppen
        forest forests m Wald Wälder
        stable stables m Stall Ställe
        house houses n Haus Häuser
        room rooms n Zimmer Zimmer
        tent tents n Zelt Zelte"""),
}
KINDS = ("animal", "person", "thing", "place", "building")
NOUNS_BY_KIND = {kind: tuple(w for w, n in NOUNS.items() if n.kind == kind) for kind in KINDS}
# Adjective lists are shared by kinds that take the same adjectives.
ADJECTIVE_GROUP = {"animal": "animate", "person": "animate", "thing": "thing",
                   "place": "place", "building": "building"}

TRANSITIVE_VERBS = _parse_verbs("""
    chase chases chased | jagt jagen jagte jagten | animal person | animal person
    see sees saw | sieht sehen sah sahen | animal person | animal person thing place building
    hear hears heard | hört hören hörte hörten | animal person | animal person
    watch watches watched | beobachtet beobachten beobachtete beobachteten | animal person | animal person
    bite bites bit | beißt beißen biss bissen | animal | animal person thing
    catch catches caught | fängt fangen fing fingen | animal person | animal person thing
    feed feeds fed | füttert füttern fütterte fütterten | person | animal person
    like likes liked | mag mögen mochte mochten | animal person | animal person thing place building
    love loves loved | liebt lieben liebte liebten | animal person | animal person
    visit visits visited | besucht besuchen besuchte besuchten | person | person building
    meet meets met | trifft treffen traf trafen | animal person | animal person
    greet greets greeted | grüßt grüßen grüßte grüßten | person | person
    find finds found | findet finden fand fanden | animal person | animal person thing
    carry carries carried | trägt tragen trug trugen | animal person | animal thing
    buy buys bought | kauft kaufen kaufte kauften | person | animal thing
    hold holds held | hält halten hielt hielten | person | animal thing
    lose loses lost | verliert verlieren verlor verloren | animal person | thing
    bring brings brought | bringt bringen brachte brachten | animal person | thing
    paint paints painted | malt malen malte malten | person | animal person thing place building
    wash washes washed | wäscht waschen wusch wuschen | person | animal person thing
    cross crosses crossed | überquert überqueren überquerte überquerten | animal person | place
    enter enters entered | betritt betreten betrat betraten | animal person | building""")

INTRANSITIVE_VERBS = _parse_verbs("""
    sleep sleeps slept | schläft schlafen schlief schliefen | animal person
    run runs ran | läuft laufen lief liefen | animal person
    sing sings sang | singt singen sang sangen | animal person
    play plays played | spielt spielen spielte spielten | animal person
    wait waits waited | wartet warten wartete warteten | animal person
    swim swims swam | schwimmt schwimmen schwamm schwammen | animal person
    jump jumps jumped | springt springen sprang sprangen | animal person
    rest rests rested | ruht ruhen ruhte ruhten | animal person
    bark barks barked | bellt bellen bellte bellten | animal
    dance dances danced | tanzt tanzen tanzte tanzten | person
    laugh laughs laughed | lacht lachen lachte lachten | person
    work works worked | arbeitet arbeiten arbeitete arbeiteten | person
    cry cries cried | weint weinen weinte weinten | person""")

REPORTING_VERBS = _parse_verbs("""
    say says said | sagt sagen sagte sagten | person
    know knows knew | weiß wissen wusste wussten | person
    think thinks thought | denkt denken dachte dachten | person
    hope hopes hoped | hofft hoffen hoffte hofften | person
    believe believes believed | glaubt glauben glaubte glaubten | person""")

ADJECTIVES = _parse_pairs("""
    tired = müde | hungry = hungrig | happy = glücklich | sad = traurig | scared = ängstlich
    lazy = faul | weak = schwach | sleepy = schläfrig | nervous = nervös | sick = krank
    angry = wütend | clever = klug | thirsty = durstig | exhausted = erschöpft | slow = langsam
    fast = schnell | young = jung | big = groß | small = klein | old = alt | red = rot
    blue = blau | green = grün | heavy = schwer | new = neu | expensive = teuer | cheap = billig
    broken = kaputt | black = schwarz | white = weiß | brown = braun | grey = grau
    wide = breit | long = lang | busy = belebt | deep = tief | steep = steil | icy = vereist
    muddy = schlammig | slippery = rutschig | beautiful = schön | quiet = ruhig | dark = dunkel
    dirty = schmutzig | noisy = laut | crowded = überfüllt | narrow = eng""")

# The coreference rule of the "because it was too ..." sentences: these adjectives only fit
# their group, so they decide whether "it" is the (animate) subject or the place/building.
COREFERENCE_ADJECTIVES = {
    "animate": tuple("tired hungry scared lazy weak sleepy nervous sick thirsty exhausted slow"
                     .split()),
    "place": tuple("wide long busy deep steep icy muddy slippery".split()),
    "building": tuple("dark dirty noisy crowded narrow".split()),
}
PREDICATE_ADJECTIVES = {
    "animate": COREFERENCE_ADJECTIVES["animate"]
    + tuple("happy sad angry clever fast young big small old".split()),
    "thing": tuple("red blue green heavy new expensive cheap broken dirty big small old".split()),
    "place": COREFERENCE_ADJECTIVES["place"] + tuple("beautiful quiet big small old".split()),
    "building": COREFERENCE_ADJECTIVES["building"] + tuple("beautiful quiet big small old".split()),
}
# Attributive adjectives, by noun kind, must inflect regularly (stem + e/en/er/es), which
# "dunkel" or "teuer" would not.
ATTRIBUTIVE_ADJECTIVES = {
    "animal": tuple("big small old young black white brown grey hungry tired lazy".split()),
    "person": tuple("old young hungry tired lazy clever happy sad".split()),
    "thing": tuple("big small old new red blue green black white".split()),
    "place": (),
    "building": (),
}

INTENSIFIERS = {"very": "sehr", "too": "zu"}
FREQUENCY_ADVERBS = {"often": "oft", "always": "immer", "never": "nie", "sometimes": "manchmal",
                     "rarely": "selten", "usually": "meistens"}
MANNER_ADVERBS = {"quickly": "schnell", "slowly": "langsam", "quietly": "leise",
                  "loudly": "laut", "happily": "fröhlich", "carefully": "vorsichtig"}
PLACE_PHRASES = _parse_pairs("""
    in the garden = im Garten | in the park = im Park | in the forest = im Wald
    in the house = im Haus | in the kitchen = in der Küche | on the street = auf der Straße
    on the bridge = auf der Brücke | by the river = am Fluss | at the lake = am See
    on the meadow = auf der Wiese | in the barn = in der Scheune | under the tree = unter dem Baum
    behind the house = hinter dem Haus | in the field = auf dem Feld | at the station = am Bahnhof
    in the city = in der Stadt | at school = in der Schule | in the snow = im Schnee
    in the rain = im Regen""")
# Fronted time adverbs force verb-second inversion; some only fit one tense.
TIME_ADVERBS = {
    "today": ("heute", TENSES), "in the morning": ("am Morgen", TENSES),
    "in the evening": ("am Abend", TENSES), "at night": ("in der Nacht", TENSES),
    "on Sunday": ("am Sonntag", TENSES), "on Monday": ("am Montag", TENSES),
    "now": ("jetzt", ("present",)), "every day": ("jeden Tag", ("present",)),
    "yesterday": ("gestern", ("past",)), "last week": ("letzte Woche", ("past",)),
}
# connective: (German word, German clause order is verb-final, English takes a comma)
CONNECTIVES = {
    "and": ("und", False, False), "but": ("aber", False, True),
    "because": ("weil", True, False), "although": ("obwohl", True, False),
    "that": ("dass", True, False),
}


def _check_one_to_one(name: str, german_words) -> None:
    """Distinct English words need distinct German words, or two sentences could collide."""
    german_words = list(german_words)
    if len(set(german_words)) != len(german_words):
        raise ValueError(f"demo lexicon {name} maps two English words to one German word")


_check_one_to_one("nouns", (n.german for n in NOUNS.values()))
_check_one_to_one("adjectives", ADJECTIVES.values())
_check_one_to_one("adverbs", list(FREQUENCY_ADVERBS.values()) + list(MANNER_ADVERBS.values()))
_check_one_to_one("places", PLACE_PHRASES.values())
_check_one_to_one("verbs", (v.german_singular for v in {**TRANSITIVE_VERBS,
                  **INTRANSITIVE_VERBS, **REPORTING_VERBS}.values()))


# --- Noun phrases --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NounPhrase:
    english: str  # "the big dog"
    nominative: str  # "der große Hund"
    accusative: str  # "den großen Hund"
    plural: bool
    gender: str | None  # of the head noun; None for names and "A and B"
    kind: str
    definite: bool  # an indefinite object cannot be negated with "nicht" (German needs "kein")


_ARTICLES = {  # (definite, case) -> gender -> article
    (True, "nominative"): {"m": "der", "f": "die", "n": "das"},
    (True, "accusative"): {"m": "den", "f": "die", "n": "das"},
    (False, "nominative"): {"m": "ein", "f": "eine", "n": "ein"},
    (False, "accusative"): {"m": "einen", "f": "eine", "n": "ein"},
}
# Adjective endings after the article: weak after der/die/das, mixed after ein/eine.
_ADJECTIVE_ENDINGS = {
    (True, "nominative"): {"m": "e", "f": "e", "n": "e"},
    (True, "accusative"): {"m": "en", "f": "e", "n": "e"},
    (False, "nominative"): {"m": "er", "f": "e", "n": "es"},
    (False, "accusative"): {"m": "en", "f": "e", "n": "es"},
}


def _german_noun_phrase(noun: Noun, plural: bool, definite: bool, case: str,
                        adjective: str | None) -> str:
    if plural:
        article, ending = "die", "en"
    else:
        article = _ARTICLES[definite, case][noun.gender]
        ending = _ADJECTIVE_ENDINGS[definite, case][noun.gender]
    words = [article]
    if adjective:
        stem = ADJECTIVES[adjective]
        words.append(stem + (ending[1:] if stem.endswith("e") else ending))  # müde + e = müde
    words.append(noun.german_plural if plural else noun.german)
    return " ".join(words)


def noun_phrase(noun: str, plural: bool = False, definite: bool = True,
                adjective: str | None = None) -> NounPhrase:
    """"the dog", "a big dog", "the dogs" with German nominative and accusative forms."""
    if noun not in NOUNS:
        raise ValueError(f"unknown demo noun {noun!r}")
    entry = NOUNS[noun]
    if adjective is not None and adjective not in ATTRIBUTIVE_ADJECTIVES[entry.kind]:
        raise ValueError(f"adjective {adjective!r} cannot stand before {noun!r}")
    if plural and not definite:
        raise ValueError("indefinite noun phrases are singular only")
    head = entry.english_plural if plural else entry.english
    english = [adjective, head] if adjective else [head]
    article = "the" if definite else ("an" if english[0][0] in "aeiou" else "a")
    forms = {case: _german_noun_phrase(entry, plural, definite, case, adjective)
             for case in ("nominative", "accusative")}
    return NounPhrase(" ".join([article, *english]), forms["nominative"], forms["accusative"],
                      plural, entry.gender, entry.kind, definite)


def name_phrase(name: str) -> NounPhrase:
    if name not in NAMES:
        raise ValueError(f"unknown demo name {name!r}")
    return NounPhrase(name, name, name, False, None, "person", True)


def compound_phrase(first: NounPhrase, second: NounPhrase) -> NounPhrase:
    """"Tom and the dog": a plural subject, so the verb takes its plural form."""
    kinds = {first.kind, second.kind}
    if not kinds <= {"animal", "person"}:
        raise ValueError(f"only animals and persons can be joined with 'and', got {sorted(kinds)}")
    kind = "person" if "person" in kinds else "animal"
    return NounPhrase(f"{first.english} and {second.english}",
                      f"{first.nominative} und {second.nominative}",
                      f"{first.accusative} und {second.accusative}",
                      True, None, kind, first.definite and second.definite)


def pronoun(antecedent: NounPhrase) -> NounPhrase:
    """"it"/"they" for a noun phrase; German picks er/sie/es by the antecedent's gender."""
    if antecedent.plural:
        return NounPhrase("they", "sie", "sie", True, None, antecedent.kind, True)
    if antecedent.gender is None:
        raise ValueError(f"no 'it' pronoun for {antecedent.english!r}")
    nominative = {"m": "er", "f": "sie", "n": "es"}[antecedent.gender]
    accusative = {"m": "ihn", "f": "sie", "n": "es"}[antecedent.gender]
    return NounPhrase("it", nominative, accusative, False, antecedent.gender, antecedent.kind, True)


# --- Clauses -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Clause:
    english: str  # English word order does not change with clause type
    subject: str
    finite_verb: str
    middle: tuple[str, ...]  # German middle field, in order

    def main_order(self) -> str:
        return " ".join([self.subject, self.finite_verb, *self.middle])

    def inverted_order(self, front: str) -> str:
        return " ".join([front, self.finite_verb, self.subject, *self.middle])

    def verb_final_order(self) -> str:
        return " ".join([self.subject, *self.middle, self.finite_verb])


def _check_choice(what: str, value, allowed) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"unknown {what} {value!r}: choose from {sorted(allowed)}")


def _check_subject(verb: Verb, subject: NounPhrase) -> None:
    if subject.kind not in verb.subject_kinds:
        raise ValueError(f"verb {verb.base!r} takes no {subject.kind} as subject")


def _german_finite(verb: Verb, plural: bool, tense: str) -> str:
    if tense == "present":
        return verb.german_plural if plural else verb.german_singular
    return verb.german_past_plural if plural else verb.german_past_singular


def _english_verb_group(verb: Verb, plural: bool, tense: str, negated: bool,
                        frequency: str | None) -> list[str]:
    """"chases", "chase", "chased", "often chases", "doesn't chase", "didn't chase"."""
    _check_choice("tense", tense, TENSES)
    _check_choice("frequency adverb", frequency, FREQUENCY_ADVERBS)
    if negated and frequency:
        raise ValueError("a negated clause takes no frequency adverb")
    if negated:
        auxiliary = "didn't" if tense == "past" else ("don't" if plural else "doesn't")
        return [auxiliary, verb.base]
    form = verb.past if tense == "past" else (verb.base if plural else verb.third_person)
    return [frequency, form] if frequency else [form]


def _adverbials(frequency: str | None, negated: bool) -> list[str]:
    """German frequency adverb then "nicht": both follow a definite object."""
    return ([FREQUENCY_ADVERBS[frequency]] if frequency else []) + (["nicht"] if negated else [])


def transitive(subject: NounPhrase, verb: str, obj: NounPhrase, tense: str = "present",
               negated: bool = False, frequency: str | None = None,
               place: str | None = None) -> Clause:
    """"the dog chases the cat" -> der Hund jagt | die Katze [oft] [nicht] [im Garten]."""
    _check_choice("transitive verb", verb, TRANSITIVE_VERBS)
    _check_choice("place phrase", place, PLACE_PHRASES)
    entry = TRANSITIVE_VERBS[verb]
    _check_subject(entry, subject)
    if obj.kind not in entry.object_kinds:
        raise ValueError(f"verb {verb!r} takes no {obj.kind} as object")
    if not obj.definite and (negated or frequency):
        # German would need "kein" or adverb-before-object order: kept out of the grammar.
        raise ValueError("an indefinite object takes no negation or frequency adverb")
    english = [subject.english, *_english_verb_group(entry, subject.plural, tense, negated,
                                                     frequency), obj.english]
    middle = [obj.accusative, *_adverbials(frequency, negated)]
    if place:
        english.append(place)
        middle.append(PLACE_PHRASES[place])
    return Clause(" ".join(english), subject.nominative,
                  _german_finite(entry, subject.plural, tense), tuple(middle))


def intransitive(subject: NounPhrase, verb: str, tense: str = "present", negated: bool = False,
                 frequency: str | None = None, manner: str | None = None,
                 place: str | None = None) -> Clause:
    """"the dog often runs quickly in the park" -> der Hund läuft | oft schnell im Park."""
    _check_choice("intransitive verb", verb, INTRANSITIVE_VERBS)
    _check_choice("manner adverb", manner, MANNER_ADVERBS)
    _check_choice("place phrase", place, PLACE_PHRASES)
    entry = INTRANSITIVE_VERBS[verb]
    _check_subject(entry, subject)
    english = [subject.english, *_english_verb_group(entry, subject.plural, tense, negated,
                                                     frequency)]
    middle = _adverbials(frequency, negated)
    for english_word, german_word in ((manner, MANNER_ADVERBS.get(manner)),
                                      (place, PLACE_PHRASES.get(place))):
        if english_word:
            english.append(english_word)
            middle.append(german_word)
    return Clause(" ".join(english), subject.nominative,
                  _german_finite(entry, subject.plural, tense), tuple(middle))


def predicate(subject: NounPhrase, adjective: str, tense: str = "present",
              negated: bool = False, frequency: str | None = None,
              intensifier: str | None = None) -> Clause:
    """"the dog is not very tired" -> der Hund ist | nicht sehr müde."""
    _check_choice("tense", tense, TENSES)
    _check_choice("frequency adverb", frequency, FREQUENCY_ADVERBS)
    _check_choice("intensifier", intensifier, INTENSIFIERS)
    _check_choice(f"{subject.kind} adjective", adjective,
                  PREDICATE_ADJECTIVES[ADJECTIVE_GROUP[subject.kind]])
    if negated and frequency:
        raise ValueError("a negated clause takes no frequency adverb")
    be = {"present": ("are", "sind") if subject.plural else ("is", "ist"),
          "past": ("were", "waren") if subject.plural else ("was", "war")}[tense]
    english = [subject.english, be[0], frequency, "not" if negated else None, intensifier,
               adjective]
    middle = [*_adverbials(frequency, negated),
              *([INTENSIFIERS[intensifier]] if intensifier else []), ADJECTIVES[adjective]]
    return Clause(" ".join(w for w in english if w), subject.nominative, be[1], tuple(middle))


def reporting(subject: NounPhrase, verb: str, tense: str = "present") -> Clause:
    """"Tom says" -> Tom sagt; the reported clause follows with "that"/"dass"."""
    _check_choice("reporting verb", verb, REPORTING_VERBS)
    entry = REPORTING_VERBS[verb]
    _check_subject(entry, subject)
    english = [subject.english, *_english_verb_group(entry, subject.plural, tense, False, None)]
    return Clause(" ".join(english), subject.nominative,
                  _german_finite(entry, subject.plural, tense), ())
