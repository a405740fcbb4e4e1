"""Vietnamese text folding, so searches ignore diacritics."""

from __future__ import annotations

import unicodedata

# NFD leaves đ/Đ intact (it is a separate letter, not d + a mark), so map it by hand.
_EXTRA = str.maketrans({"đ": "d", "Đ": "d"})


def fold(text: str) -> str:
    """Lowercase ``text`` without diacritics and with single spaces.

    >>> fold("  Nguyễn   Văn Đức ")
    'nguyen van duc'
    """
    decomposed = unicodedata.normalize("NFD", text.translate(_EXTRA))
    bare = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return " ".join(bare.lower().split())
