"""A small deterministic text corpus for the GPT preset's training run, generated, not shipped.

Sentences from a fixed vocabulary and a few grammar rules, drawn with a seeded
generator: the same text on every machine, with enough structure (words,
agreement, punctuation) that a byte-level model's loss falls well below chance.
"""

import torch

_SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the river", "a small bird", "the engineer", "our team"]
_VERBS = ["sees", "likes", "follows", "builds", "remembers", "carries", "paints", "finds"]
_OBJECTS = ["the bridge", "a red apple", "the quiet garden", "an open door", "the long road", "a paper boat"]
_ENDINGS = ["at dawn", "in the rain", "with care", "every morning", "before the storm", "without a word"]


def corpus_text(sentences: int = 4000, seed: int = 0) -> str:
    """``sentences`` generated sentences joined into one text."""
    generator = torch.Generator().manual_seed(seed)

    def pick(words: list[str]) -> str:
        return words[int(torch.randint(len(words), (), generator=generator))]

    lines = []
    for _ in range(sentences):
        sentence = f"{pick(_SUBJECTS)} {pick(_VERBS)} {pick(_OBJECTS)}"
        if torch.rand((), generator=generator) < 0.6:
            sentence += f" {pick(_ENDINGS)}"
        lines.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(lines)


def corpus_tokens(sentences: int = 4000, seed: int = 0) -> torch.Tensor:
    """The corpus as byte tokens (int64)."""
    return torch.tensor(list(corpus_text(sentences, seed).encode("ascii")), dtype=torch.int64)
