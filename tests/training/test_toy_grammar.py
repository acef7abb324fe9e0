"""The bundled toy grammar: deterministic, disjoint splits, and alignments that are right."""

from __future__ import annotations

import random

import pytest

from training.data.toy_grammar import (
    ADJECTIVES,
    ANIMATE,
    CLITICS,
    DEFINITE,
    INANIMATE,
    INDEFINITE,
    VERBS,
    generate_pair,
    toy_splits,
)


def lexicon() -> dict[str, set[str]]:
    """Spanish word -> the English words it may align to, from the grammar's own tables."""
    out: dict[str, set[str]] = {}

    def add(es: str, *en: str) -> None:
        out.setdefault(es, set()).update(en)

    for noun in ANIMATE + INANIMATE:
        add(noun.singular, noun.english)
        add(noun.plural, noun.english_plural)
    for adj in ADJECTIVES:
        for feminine in (False, True):
            for plural in (False, True):
                add(adj.form(feminine, plural), adj.english)
    for word in DEFINITE.values():
        add(word, "the")
    for (_, plural), word in INDEFINITE.items():
        add(word, "some" if plural else "a", "an")
    for (_, plural), word in CLITICS.items():
        add(word, "them" if plural else "it")
    for verb in VERBS:
        for person, form in verb.forms.items():
            add(form, verb.english, verb.english_3sg, *(
                {"1sg": ["I"], "1pl": ["we"]}.get(person, [])))
    add("no", "do", "does", "not")
    return out


@pytest.fixture(scope="module")
def splits():
    return toy_splits((3000, 300, 300))


def test_same_seed_same_corpus_and_larger_train_keeps_held_out(splits) -> None:
    again = toy_splits((3000, 300, 300))
    assert again.train.sources == splits.train.sources
    assert again.train.alignments == splits.train.alignments
    bigger = toy_splits((4000, 300, 300))
    assert bigger.test.sources == splits.test.sources
    assert bigger.dev.targets == splits.dev.targets
    assert toy_splits((3000, 300, 300), seed=7).train.sources != splits.train.sources


def test_splits_are_disjoint(splits) -> None:
    train, dev, test = (set(c.sources) for c in (splits.train, splits.dev, splits.test))
    assert len(train) == 3000 and len(dev) == 300 and len(test) == 300
    assert not (train & dev or train & test or dev & test)


def test_every_alignment_links_translations(splits) -> None:
    words = lexicon()
    for corpus in (splits.train, splits.dev, splits.test):
        for source, target, alignment in zip(corpus.sources, corpus.targets,
                                             corpus.alignments, strict=True):
            src, tgt = source.split(), target.split()
            assert len(alignment) == len(tgt)
            for j, i in enumerate(alignment):
                assert tgt[j] in words[src[i]], (source, target, j)
            assert set(alignment) == set(range(len(src))), (source, target)  # no word left out


def test_alignments_are_non_monotonic(splits) -> None:
    crossing = sum(any(a > b for a, b in zip(al, al[1:], strict=False))
                   for al in splits.train.alignments)
    assert crossing > len(splits.train) / 3  # adjective order and clitics cross often


def find(rng_seed: int, predicate) -> tuple[str, str, tuple[int, ...]]:
    rng = random.Random(rng_seed)
    for _ in range(20000):
        pair = generate_pair(rng)
        if predicate(*pair):
            return pair
    raise AssertionError("pattern not generated")


def test_adjective_reorders() -> None:
    source, target, alignment = find(0, lambda s, t, a: s.startswith("el gato negro "))
    assert target.startswith("the black cat ")
    assert alignment[:3] == (0, 2, 1)  # the->el, black->negro, cat->gato


def test_feminine_plural_agreement() -> None:
    plural_forms = {v.forms["3pl"]: v for v in VERBS}
    source, target, _ = find(1, lambda s, t, a: s.startswith("las vacas negras ")
                             and s.split()[3] in plural_forms)
    verb = plural_forms[source.split()[3]]
    assert target.split()[:4] == ["the", "black", "cows", verb.english]  # eat, not eats


def test_negation_and_clitic_reorder() -> None:
    source, target, alignment = find(2, lambda s, t, a: s.startswith("no lo veo"))
    assert source == "no lo veo" and target == "I do not see it"
    assert alignment == (2, 0, 0, 2, 1)


@pytest.mark.parametrize(("spanish_end", "english_end"), [
    ("un árbol viejo", "an old tree"), ("un coche", "a car"), ("una manzana", "an apple"),
    ("una manzana roja", "a red apple"), ("unas manzanas", "some apples"),
])
def test_indefinite_article(spanish_end: str, english_end: str) -> None:
    _, target, _ = find(3, lambda s, t, a: s.endswith(" " + spanish_end))
    assert target.endswith(" " + english_end)
