"""Text normalisation and hashing shared by the keyword index and the offline embedder.

Everything here works on a *batch* of texts at once with numpy, because the JSONL importer
has to tokenise and embed tens of thousands of memories per second and a Python loop per word
is too slow for that. The steps:

1. ``fold``: lower-case and strip accents ("Reclamação" -> "reclamacao") with one
   ``str.translate`` table, so Portuguese and English words match with or without diacritics.
2. Everything that is not a letter or digit becomes a single space.
3. The batch is joined into one string, separated by ``\\x01``, turned into a uint32 array of
   code points, and every n-gram / word / word bigram is hashed with a polynomial hash computed
   from prefix sums (mod 2**64), then mixed (splitmix64 finaliser) so that low bits are usable.

Hashes are stable across processes and machines (no Python ``hash()``, which is salted), since
they are stored on disk as keyword-index terms.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

_SEP = "\x01"
_P = np.uint64(1_000_003)  # odd, so it has an inverse mod 2**64
_P_INV = np.uint64(pow(1_000_003, -1, 2**64))
_NON_WORD = re.compile(r"[^\w\x01]+|_+")


def _build_fold_table() -> dict[int, str]:
    """Map every accented Latin letter (U+00C0..U+024F) to its base letter, lower-cased."""
    table: dict[int, str] = {}
    for code in range(0xC0, 0x250):
        char = chr(code)
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        if base and base != char and base.isascii():
            table[code] = base.lower()
    table[ord("ß")] = "ss"
    table[ord("æ")] = "ae"
    table[ord("Æ")] = "ae"
    table[ord("ø")] = "o"
    table[ord("Ø")] = "o"
    return table


_FOLD = _build_fold_table()


def _build_fold_codes() -> tuple[np.ndarray, np.ndarray]:
    """``_FOLD`` as numpy tables over the code points it touches (all below 0x250): the code
    point each maps to, and which map to more than one character (ß -> ss, ĳ -> ij, ...)."""
    codes = np.arange(_FOLD_END, dtype=np.uint32)
    multi = np.zeros(_FOLD_END, dtype=bool)
    for code, replacement in _FOLD.items():
        if len(replacement) == 1:
            codes[code] = ord(replacement)
        else:
            multi[code] = True
    return codes, multi


_FOLD_END = max(_FOLD) + 1
_FOLD_CODES, _FOLD_MULTI = _build_fold_codes()


def _folded_codes(lowered: str) -> np.ndarray:
    """``lowered.translate(_FOLD)`` as a uint32 array of code points.

    str.translate leaves its ASCII fast path at the first accented letter and then costs ~50 ns
    per character (half of the offline embedder's time, measured); a table lookup in numpy gives
    the same code points ~30x faster. The few letters that fold into two (ß, æ, ĳ, ...) change
    the length, so a text holding one goes through str.translate as before.
    """
    codes = np.frombuffer(lowered.encode("utf-32-le"), dtype=np.uint32)
    if lowered.isascii():  # nothing to fold: every key of _FOLD is above 0x7F
        return codes
    low = np.minimum(codes, _FOLD_END - 1)
    touched = codes < _FOLD_END
    if _FOLD_MULTI[low[touched]].any():
        return np.frombuffer(lowered.translate(_FOLD).encode("utf-32-le"), dtype=np.uint32)
    return np.where(touched, _FOLD_CODES[low], codes)


def fold(text: str) -> str:
    """Lower-case, accent-free, words separated by single spaces."""
    folded = _NON_WORD.sub(" ", text.lower().translate(_FOLD))
    return " ".join(folded.split())


def words(text: str) -> list[str]:
    return fold(text).split()


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the polynomial hash over all 64 bits."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@dataclass(frozen=True)
class Grams:
    """Hashes of one kind of feature over a batch: ``doc[i]`` is the text that ``hash[i]`` came from."""

    doc: np.ndarray  # int64
    hash: np.ndarray  # uint64


def _build_word_table() -> np.ndarray:
    """is_word[code point] for the Basic Multilingual Plane (letters and digits of any script)."""
    table = np.array([chr(c).isalnum() for c in range(0x10000)], dtype=bool)
    table[ord(_SEP)] = True  # kept, so that texts stay apart
    return table


_IS_WORD = _build_word_table()


def _words_and_single_spaces(codes: np.ndarray) -> np.ndarray:
    """Code points with every run of non-word characters turned into one space (numpy ``re.sub``)."""
    in_bmp = codes < 0x10000
    is_word = np.zeros(len(codes), dtype=bool)
    is_word[in_bmp] = _IS_WORD[codes[in_bmp]]
    codes = np.where(is_word, codes, ord(" ")).astype(np.uint64)
    keep = np.ones(len(codes), dtype=bool)
    keep[1:] = is_word[1:] | is_word[:-1]
    return codes[keep]


class _Powers:
    """P**i and P**-i mod 2**64 for i < n, grown on demand and kept (they never change)."""

    def __init__(self) -> None:
        self.forward = np.ones(1, dtype=np.uint64)
        self.inverse = np.ones(1, dtype=np.uint64)

    def ensure(self, n: int) -> None:
        if len(self.forward) >= n:
            return
        size = max(n, 2 * len(self.forward))
        with np.errstate(over="ignore"):
            self.forward = self._geometric(_P, size)
            self.inverse = self._geometric(_P_INV, size)

    @staticmethod
    def _geometric(base: np.uint64, size: int) -> np.ndarray:
        out = np.empty(size, dtype=np.uint64)
        out[0] = 1
        np.cumprod(np.full(size - 1, base, dtype=np.uint64), dtype=np.uint64, out=out[1:])
        return out


_POWERS = _Powers()


class HashedBatch:
    """A batch of texts, folded and ready to hash into words, word bigrams and char n-grams."""

    def __init__(self, texts: list[str]) -> None:
        self.size = len(texts)
        # One C-level pass over the whole batch; every text is padded with spaces so each word
        # has a boundary on both sides.
        inner = f" {_SEP} ".join(texts)
        if inner.count(_SEP) != max(len(texts) - 1, 0):
            # A text holding the separator itself would shift every later text's number (the
            # embedder then failed on a reshape): there it is just a non-word character.
            inner = f" {_SEP} ".join(t.replace(_SEP, " ") for t in texts)
        joined = f" {inner} ".lower()
        codes = _words_and_single_spaces(_folded_codes(joined))
        n = len(codes)
        _POWERS.ensure(n + 1)
        self._codes = codes
        self._is_sep = codes == ord(_SEP)
        self._doc = np.cumsum(self._is_sep, dtype=np.int64)
        with np.errstate(over="ignore"):
            # prefix[i] = sum(codes[j] * P**j for j < i), wrapping mod 2**64.
            prefix = np.zeros(n + 1, dtype=np.uint64)
            np.cumsum(codes * _POWERS.forward[:n], out=prefix[1:], dtype=np.uint64)
        self._prefix = prefix
        self._inverse = _POWERS.inverse
        self._is_space = codes == ord(" ")
        is_break = self._is_space | self._is_sep
        # A word starts after a break and ends before one; the padding guarantees both.
        self._word_start = np.flatnonzero(~is_break[1:] & is_break[:-1]) + 1
        self._word_end = np.flatnonzero(~is_break[:-1] & is_break[1:]) + 1

    def _segment_hash(self, start: np.ndarray, end: np.ndarray, salt: int) -> np.ndarray:
        with np.errstate(over="ignore"):
            raw = (self._prefix[end] - self._prefix[start]) * self._inverse[start]
            return _mix(
                raw + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15) + (end - start).astype(np.uint64)
            )

    def words(self) -> Grams:
        start, end = self._word_start, self._word_end
        return Grams(self._doc[start], self._segment_hash(start, end, salt=1))

    def word_bigrams(self) -> Grams:
        start, end = self._word_start, self._word_end
        same_doc = self._doc[start[:-1]] == self._doc[start[1:]]
        first, last = start[:-1][same_doc], end[1:][same_doc]
        return Grams(self._doc[first], self._segment_hash(first, last, salt=2))

    def char_ngrams(self, n: int) -> Grams:
        """n-grams of the space-padded text that do not cross a text boundary or a double space."""
        count = len(self._codes) - n + 1
        if count <= 0:
            return Grams(np.empty(0, np.int64), np.empty(0, np.uint64))
        start = np.arange(count, dtype=np.int64)
        crosses = np.zeros(count, dtype=bool)
        for k in range(n):
            crosses |= self._is_sep[k : k + count]
        # An n-gram that starts and ends on a space (e.g. " a ") carries no more than the word.
        crosses |= self._is_space[:count] & self._is_space[n - 1 : n - 1 + count]
        keep = start[~crosses]
        return Grams(self._doc[keep], self._segment_hash(keep, keep + n, salt=10 + n))


def term_hashes(texts: list[str]) -> Grams:
    """Keyword-index terms (folded words, stop words removed) as signed-int64-safe hashes."""
    return terms_of(HashedBatch(texts).words())


def terms_of(words: Grams) -> Grams:
    """The keyword-index terms among a batch's words (what term_hashes returns), for callers
    that hashed the words already (the offline embedder hashes the same words)."""
    # A sorted-table lookup: np.isin sorted the whole batch's words each time (3x slower).
    pos = np.minimum(np.searchsorted(_STOPWORD_HASHES, words.hash), len(_STOPWORD_HASHES) - 1)
    keep = _STOPWORD_HASHES[pos] != words.hash
    return Grams(words.doc[keep], to_term_id(words.hash[keep]))


def to_term_id(hashes: np.ndarray) -> np.ndarray:
    """Store hashes as BIGINT: the top bit dropped so the value is a positive int64."""
    return (hashes >> np.uint64(1)).astype(np.int64)


# Function words of English and Portuguese: in every other memory, so they only add postings.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
        "you",
        "your",
        "we",
        "our",
        "they",
        "their",
        "he",
        "she",
        "his",
        "her",
        "me",
        "my",
        "not",
        "no",
        "do",
        "does",
        "did",
        "so",
        "if",
        "then",
        "o",
        "os",
        "as",
        "um",
        "uma",
        "uns",
        "umas",
        "e",
        "de",
        "do",
        "da",
        "dos",
        "das",
        "em",
        "no",
        "na",
        "nos",
        "nas",
        "por",
        "para",
        "com",
        "que",
        "se",
        "ao",
        "aos",
        "à",
        "é",
        "foi",
        "ser",
        "sao",
        "mas",
        "ou",
        "meu",
        "minha",
        "seu",
        "sua",
        "eu",
        "ele",
        "ela",
        "nao",
        "sim",
        "lhe",
        "isso",
        "esta",
        "este",
        "essa",
        "esse",
    ]
)
_STOPWORD_HASHES = np.sort(HashedBatch(sorted(STOPWORDS)).words().hash)


# -- one short query's terms in plain Python ----------------------------------------------------

#: Longer queries (and any holding a code point beyond the BMP) go through term_hashes.
_SHORT_QUERY = 512
_MASK = (1 << 64) - 1
_WORD_SALT = 0x9E3779B97F4A7C15  # salt 1 (words) times the constant in _segment_hash
_WORD_RUN = re.compile(r"[^\W_]+")  # a run of str.isalnum() characters, as _IS_WORD has them
_STOPWORD_SET = frozenset(_STOPWORD_HASHES.tolist())


def query_terms(query: str) -> np.ndarray:
    """``np.unique(term_hashes([query]).hash)``: the same term ids, sorted and unique.

    A search hashes one short query, where term_hashes' two dozen numpy calls cost ~40 us; the
    same polynomial hash and splitmix64 finaliser in Python ints cost a few (tests compare both).
    """
    folded = query.replace(_SEP, " ").lower().translate(_FOLD)
    if len(folded) > _SHORT_QUERY or (not folded.isascii() and max(folded) > "\uffff"):
        return np.unique(term_hashes([query]).hash)
    terms = set()
    for word in _WORD_RUN.findall(folded):
        h = 0
        for char in reversed(word):  # Horner: sum(code[k] * P**k) mod 2**64
            h = (h * 1_000_003 + ord(char)) & _MASK
        h = _mix_int((h + _WORD_SALT + len(word)) & _MASK)
        if h not in _STOPWORD_SET:
            terms.add(h >> 1)  # to_term_id
    return np.array(sorted(terms), dtype=np.int64)


def _mix_int(h: int) -> int:
    """_mix on one Python int."""
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _MASK
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)
