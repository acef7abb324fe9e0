"""The bundled translation corpus: Spanish -> English sentences generated from a small grammar.

It works offline on a fresh machine and, unlike real data, every pair comes with its word
alignment (target word index -> source word index), so a test can check that attention looks
where a translator would. The grammar is chosen to make those alignments non-monotonic:

- noun-adjective order reverses:     el gato negro        -> the black cat
- clitic pronouns precede the verb:  lo veo               -> I see it
- negation splits in English:        no lo ven            -> (they) do not see it
- agreement: gender and number on determiner, noun and adjective; person and number on the
  verb; dropped subject pronouns come back in English from the verb ending (veo -> I see);
  English "a" becomes "an" before a vowel (un gato viejo -> an old cat).

Subjects are animate, objects inanimate, so Spanish never needs the personal "a".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from training.data.parallel import ParallelCorpus, ParallelSplits

DEFAULT_SIZES = (6000, 500, 500)  # train, dev, test
DEFAULT_SEED = 1234  # the corpus is part of the product: fixed, not the training seed


@dataclass(frozen=True)
class Noun:
    singular: str
    plural: str
    feminine: bool
    english: str
    english_plural: str


@dataclass(frozen=True)
class Adjective:
    masculine: str  # singular; feminine and plural forms derive from it
    english: str

    def form(self, feminine: bool, plural: bool) -> str:
        word = self.masculine
        if word.endswith("o"):
            word = word[:-1] + ("a" if feminine else "o")
        return word + "s" if plural else word


@dataclass(frozen=True)
class Verb:
    forms: dict[str, str]  # person/number ("1sg", "1pl", "3sg", "3pl") -> Spanish form
    english: str  # base form: see
    english_3sg: str  # sees


ANIMATE = [
    Noun("gato", "gatos", False, "cat", "cats"),
    Noun("perro", "perros", False, "dog", "dogs"),
    Noun("niño", "niños", False, "boy", "boys"),
    Noun("hombre", "hombres", False, "man", "men"),
    Noun("pájaro", "pájaros", False, "bird", "birds"),
    Noun("caballo", "caballos", False, "horse", "horses"),
    Noun("niña", "niñas", True, "girl", "girls"),
    Noun("mujer", "mujeres", True, "woman", "women"),
    Noun("vaca", "vacas", True, "cow", "cows"),
]
INANIMATE = [
    Noun("libro", "libros", False, "book", "books"),
    Noun("coche", "coches", False, "car", "cars"),
    Noun("árbol", "árboles", False, "tree", "trees"),
    Noun("manzana", "manzanas", True, "apple", "apples"),
    Noun("mesa", "mesas", True, "table", "tables"),
    Noun("flor", "flores", True, "flower", "flowers"),
    Noun("carta", "cartas", True, "letter", "letters"),
]
ADJECTIVES = [
    Adjective("negro", "black"),
    Adjective("blanco", "white"),
    Adjective("pequeño", "small"),
    Adjective("grande", "big"),
    Adjective("rojo", "red"),
    Adjective("viejo", "old"),
    Adjective("nuevo", "new"),
    Adjective("bonito", "pretty"),
]
VERBS = [
    Verb({"1sg": "veo", "1pl": "vemos", "3sg": "ve", "3pl": "ven"}, "see", "sees"),
    Verb({"1sg": "como", "1pl": "comemos", "3sg": "come", "3pl": "comen"}, "eat", "eats"),
    Verb({"1sg": "tengo", "1pl": "tenemos", "3sg": "tiene", "3pl": "tienen"}, "have", "has"),
    Verb({"1sg": "quiero", "1pl": "queremos", "3sg": "quiere", "3pl": "quieren"},
         "want", "wants"),
    Verb({"1sg": "compro", "1pl": "compramos", "3sg": "compra", "3pl": "compran"},
         "buy", "buys"),
    Verb({"1sg": "llevo", "1pl": "llevamos", "3sg": "lleva", "3pl": "llevan"},
         "carry", "carries"),
    Verb({"1sg": "miro", "1pl": "miramos", "3sg": "mira", "3pl": "miran"},
         "watch", "watches"),
]
DEFINITE = {(False, False): "el", (True, False): "la", (False, True): "los", (True, True): "las"}
INDEFINITE = {(False, False): "un", (True, False): "una", (False, True): "unos",
              (True, True): "unas"}
CLITICS = {(False, False): "lo", (True, False): "la", (False, True): "los", (True, True): "las"}
PRONOUNS = {"1sg": "I", "1pl": "we"}


class _Sentence:
    """Spanish words and English words, each English word remembering its Spanish index."""

    def __init__(self) -> None:
        self.source: list[str] = []
        self.target: list[tuple[str, int]] = []

    def es(self, word: str) -> int:
        self.source.append(word)
        return len(self.source) - 1

    def en(self, word: str, aligned: int) -> None:
        self.target.append((word, aligned))


def _noun_phrase(rng: random.Random, nouns: list[Noun], s: _Sentence,
                 english_at: int | None = None) -> str:
    """Adds an NP to both sides (English inserted at english_at, else appended); returns the
    NP's person/number for verb agreement."""
    noun = rng.choice(nouns)
    plural = rng.random() < 0.4
    definite = rng.random() < 0.6
    adjective = rng.choice(ADJECTIVES) if rng.random() < 0.6 else None
    key = (noun.feminine, plural)
    d = s.es((DEFINITE if definite else INDEFINITE)[key])
    n = s.es(noun.plural if plural else noun.singular)
    english: list[tuple[str, int]] = []
    if adjective is not None:
        a = s.es(adjective.form(noun.feminine, plural))
        english.append((adjective.english, a))
    english.append((noun.english_plural if plural else noun.english, n))
    if definite:
        article = "the"
    elif plural:
        article = "some"
    else:
        article = "an" if english[0][0][0] in "aeiou" else "a"
    english.insert(0, (article, d))
    at = len(s.target) if english_at is None else english_at
    s.target[at:at] = english
    return "3pl" if plural else "3sg"


def generate_pair(rng: random.Random) -> tuple[str, str, tuple[int, ...]]:
    """One (Spanish, English, alignment) triple; alignment[j] = Spanish index of English word j."""
    s = _Sentence()
    r = rng.random()
    # a dropped subject (1sg, 1pl) comes back in English from the verb ending
    person = _noun_phrase(rng, ANIMATE, s) if r < 0.7 else "1sg" if r < 0.85 else "1pl"
    negated = rng.random() < 0.35
    clitic = rng.random() < 0.3
    verb = rng.choice(VERBS)
    no = s.es("no") if negated else None
    if clitic:
        feminine, plural = rng.random() < 0.5, rng.random() < 0.4
        pronoun = s.es(CLITICS[(feminine, plural)])
    v = s.es(verb.forms[person])
    if person in PRONOUNS:
        s.en(PRONOUNS[person], v)
    if negated:
        assert no is not None
        s.en("does" if person == "3sg" else "do", no)
        s.en("not", no)
        s.en(verb.english, v)
    else:
        s.en(verb.english_3sg if person == "3sg" else verb.english, v)
    if clitic:
        s.en("them" if plural else "it", pronoun)
    else:
        _noun_phrase(rng, INANIMATE, s)
    return (" ".join(s.source), " ".join(w for w, _ in s.target),
            tuple(i for _, i in s.target))


def toy_splits(sizes: tuple[int, int, int] = DEFAULT_SIZES,
               seed: int = DEFAULT_SEED) -> ParallelSplits:
    """Train, dev and test corpora of distinct Spanish sentences (no sentence in two splits).

    Test is drawn first, then dev, then train, so growing the training set leaves the
    held-out splits unchanged.
    """
    if any(n < 1 for n in sizes):
        raise ValueError(f"every split needs at least one sentence, got {sizes}")
    rng = random.Random(seed)
    seen: set[str] = set()
    corpora = []
    for split, n in zip(("test", "dev", "train"), reversed(sizes), strict=True):
        sources, targets, alignments = [], [], []
        attempts = 0
        while len(sources) < n:
            attempts += 1
            if attempts > 50 * n + 1000:
                raise ValueError(f"the grammar cannot produce {n} new {split} sentences")
            source, target, alignment = generate_pair(rng)
            if source in seen:
                continue
            seen.add(source)
            sources.append(source)
            targets.append(target)
            alignments.append(alignment)
        corpora.append(ParallelCorpus(sources, targets, f"toy grammar ({split})", alignments))
    test, dev, train = corpora
    return ParallelSplits(train, dev, test, source=f"bundled toy Spanish->English grammar "
                                                   f"(seed {seed}, sizes {list(sizes)})")
