"""Full-text search over the guides' sections: an in-memory SQLite FTS5 index, ranked with bm25.

FTS5 ships inside Python's ``sqlite3``, so the ranking is the well-understood BM25 rather than a home-made one. The
index knows nothing of guides beyond plain records; :mod:`idp_mcp.guides` feeds it at start-up. A user's query
never reaches FTS5 as syntax: every word becomes a quoted string (see :func:`fts_query`).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass

MAX_QUERY_LENGTH = 200
MAX_TERMS = 16
#: bm25 weights per indexed column: a hit in a guide's title or a section heading counts more than one in the text.
TITLE_WEIGHT, HEADING_WEIGHT, ABOUT_WEIGHT, BODY_WEIGHT = 8.0, 4.0, 0.5, 1.0

_WORD_CHAR = re.compile(r"\w")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Words that match nearly every section; dropped from a query as long as another word is left.
_STOPWORDS = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how", "i", "in", "is",
        "it", "me", "my", "of", "on", "or", "our", "should", "the", "this", "to", "use", "using", "we", "what",
        "when", "where", "which", "who", "why", "will", "with", "you", "your",
    }
)  # fmt: skip


class DocsQueryError(ValueError):
    """The query cannot be searched; the message says what to send instead."""


@dataclass(frozen=True)
class IndexedSection:
    """One section of a guide, as the index stores it."""

    guide_id: str
    title: str  # the guide's title
    heading: str
    anchor: str
    text: str
    about: str = ""  # what the whole guide is about (its summary, its id's words), searched with a lower weight


@dataclass(frozen=True)
class SearchHit:
    section: IndexedSection
    score: float  # bm25: lower is better


def search_words(query: str) -> list[str]:
    """The words of a query worth searching: whitespace-separated, each with at least one letter or digit."""
    text = _CONTROL.sub(" ", query)
    words = [word for word in text.split() if _WORD_CHAR.search(word)]
    meaningful = [word for word in words if word.lower().strip("?!.,;:'\"") not in _STOPWORDS]
    return (meaningful or words)[:MAX_TERMS]


def fts_query(words: Iterable[str], *, any_word: bool = False) -> str:
    """An FTS5 MATCH expression in which every word is a quoted string, so nothing the user typed is FTS5 syntax.

    A quoted string is tokenised like the text, so ``Next.js`` becomes the phrase ``next js``. Words are ANDed
    (the default) or ORed.
    """
    phrases = ['"' + word.replace('"', '""') + '"' for word in words]
    return (" OR " if any_word else " AND ").join(phrases)


class DocsIndex:
    """An in-memory FTS5 table of sections. Built once; searched from any thread (one lock, queries are fast)."""

    def __init__(self, sections: Iterable[IndexedSection]) -> None:
        self._sections = list(sections)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        # porter: "rotation" finds "rotate", "tokens" finds "token"; unicode61 folds case and diacritics.
        self._db.execute(
            "CREATE VIRTUAL TABLE sections USING fts5(title, heading, about, body, tokenize = 'porter unicode61')"
        )
        self._db.executemany(
            "INSERT INTO sections (rowid, title, heading, about, body) VALUES (?, ?, ?, ?, ?)",
            [(number, s.title, s.heading, s.about, s.text) for number, s in enumerate(self._sections)],
        )
        self._db.commit()

    def search(self, query: str, limit: int = 5) -> list[SearchHit]:
        """The best sections for ``query``, best first.

        Sections holding every word come first; when none does, sections holding any of them. Raises
        :class:`DocsQueryError` for a query with nothing to search.
        """
        if len(query) > MAX_QUERY_LENGTH:
            raise DocsQueryError(f"The query is longer than {MAX_QUERY_LENGTH} characters; use a few keywords.")
        words = search_words(query)
        if not words:
            raise DocsQueryError("The query has no words to search for; send a few keywords, like 'refresh token'.")
        hits = self._match(fts_query(words), limit)
        if not hits and len(words) > 1:
            hits = self._match(fts_query(words, any_word=True), limit)
        return hits

    def _match(self, expression: str, limit: int) -> list[SearchHit]:
        sql = (
            "SELECT rowid, bm25(sections, ?, ?, ?, ?) AS score FROM sections WHERE sections MATCH ? "
            "ORDER BY score, rowid LIMIT ?"
        )
        try:
            with self._lock:
                rows = self._db.execute(
                    sql, (TITLE_WEIGHT, HEADING_WEIGHT, ABOUT_WEIGHT, BODY_WEIGHT, expression, max(1, limit))
                ).fetchall()
        except sqlite3.OperationalError as exc:
            # Quoting leaves no syntax to get wrong, but a failure must still read as a bad query, never a crash.
            raise DocsQueryError("The query could not be searched; send plain keywords without symbols.") from exc
        return [SearchHit(self._sections[rowid], score) for rowid, score in rows]

    def close(self) -> None:
        self._db.close()


def passage(text: str, limit: int = 600) -> str:
    """``text`` cut to about ``limit`` characters at a word boundary, with an ellipsis when cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ", limit // 2)
    newline = cut.rfind("\n", limit // 2)
    boundary = max(space, newline)
    return (cut[:boundary] if boundary > 0 else cut).rstrip() + " …"
