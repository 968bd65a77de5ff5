"""Words from tokenizer pieces: which pieces make up each word, and relevance summed per word.

A sentencepiece tokenizer (XLM-R) splits ``bewakoof`` into ``▁bewa`` + ``koof``; WordPiece (BERT) splits
``films`` into ``film`` + ``##s``. The word of a piece is read, in this order of preference, from

1. the encoding's ``word_ids`` (the pre-tokenizer's words: whitespace-separated for sentencepiece's ``Metaspace``,
   whitespace and punctuation for BERT's pre-tokenizer): consecutive pieces with the same word id form one word;
2. the pieces' own markers when there are no word ids: a piece starting with ``▁`` (sentencepiece) or ``Ġ``
   (byte-level BPE) starts a word, one starting with ``##`` (WordPiece) continues the previous one, and any other
   piece continues the previous word when its character span touches it (its start equals the previous end).

Special tokens (``<s>``, ``[CLS]``, padding) are words of their own. The relevance of a word is the exact sum of
its pieces' relevance, ``R_word = Σ_{k ∈ word} R_k``, computed with :func:`math.fsum` (correctly rounded, so it does
not depend on the order of the pieces).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

WORD_START_MARKS = ("▁", "Ġ")
CONTINUATION_MARK = "##"


def word_groups(tokens: Sequence[str], special: Sequence[bool], offsets: Sequence[tuple[int, int]],
                word_ids: Sequence[int | None] | None = None) -> list[list[int]]:
    """The piece indices of each word, in order; every piece belongs to exactly one word."""
    groups: list[list[int]] = []
    use_ids = word_ids is not None and any(w is not None for w, s in zip(word_ids, special) if not s)
    previous_word = None      # the word id (or, without ids, the end offset) of the previous ordinary piece
    for k, (token, is_special) in enumerate(zip(tokens, special)):
        if is_special or (use_ids and word_ids[k] is None):
            groups.append([k])
            previous_word = None
            continue
        if use_ids:
            joins = previous_word is not None and word_ids[k] == previous_word
            previous_word = word_ids[k]
        else:
            start, end = offsets[k]
            if token.startswith(CONTINUATION_MARK):
                joins = previous_word is not None
            elif token.startswith(WORD_START_MARKS):
                joins = False
            else:
                joins = previous_word is not None and start == previous_word
            previous_word = end
        if joins:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def word_spans(groups: list[list[int]], offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The character span of each word: from the smallest start to the largest end of its pieces."""
    return [(min(offsets[k][0] for k in g), max(offsets[k][1] for k in g)) for g in groups]


def word_texts(text: str, groups: list[list[int]], tokens: Sequence[str], special: Sequence[bool],
               offsets: Sequence[tuple[int, int]]) -> list[str]:
    """Each word as written in ``text`` (its character span, stripped); a special token or a piece without a span
    shows its token string."""
    out = []
    for g, (start, end) in zip(groups, word_spans(groups, offsets)):
        shown = text[start:end].strip() if end > start and not any(special[k] for k in g) else ""
        out.append(shown or "".join(tokens[k] for k in g))
    return out


def sum_per_word(relevance: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """``R_word = Σ_{k ∈ word} R_k`` over the last axis of ``relevance`` (pieces), exactly rounded (math.fsum);
    leading axes (layers) are kept."""
    rel = np.asarray(relevance, dtype=np.float64)
    flat = rel.reshape(-1, rel.shape[-1])
    out = np.array([[math.fsum(row[g]) for g in groups] for row in flat], dtype=np.float64)
    return out.reshape(rel.shape[:-1] + (len(groups),))
