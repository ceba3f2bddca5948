"""The FTS5 index behind searchDocs: user text never reaches FTS5 as syntax, empty queries are refused with a
sentence, bm25 puts title and heading hits first, and every word is required unless none matches them all."""

from __future__ import annotations

import sqlite3

import pytest

from idp_mcp.docs_index import (
    MAX_QUERY_LENGTH,
    DocsIndex,
    DocsQueryError,
    IndexedSection,
    fts_query,
    passage,
    search_words,
)


def _section(guide_id: str, heading: str, text: str, title: str = "A guide", about: str = "") -> IndexedSection:
    return IndexedSection(guide_id, title, heading, heading.lower().replace(" ", "-"), text, about)


@pytest.fixture
def index() -> DocsIndex:
    return DocsIndex(
        [
            _section("tokens", "Refresh token rotation", "Each refresh returns a new refresh token.", "Tokens"),
            _section("tokens", "Sign out", "Send users to the end session endpoint.", "Tokens"),
            _section("nextjs", "Protect routes", "Export the middleware from middleware.ts.", "Next.js"),
            _section("m2m", "Overview", "A service calls an API with client credentials.", "Machine to machine"),
            _section("faq", "Odd things", "Tokens rotate. Refresh refresh refresh. Machine machine. Middleware."),
        ]
    )


# --- sanitising -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("refresh token rotation", '"refresh" AND "token" AND "rotation"'),
        ('say "hi', '"say" AND """hi"'),
        ("Next.js middleware", '"Next.js" AND "middleware"'),
        ("title:secret", '"title:secret"'),
        ("a* OR NOT b", '"a*" AND "NOT" AND "b"'),  # "or" is a stopword
        ("how do I use the tokens?", '"tokens?"'),
    ],
)
def test_every_word_becomes_a_quoted_fts5_string(query: str, expected: str) -> None:
    assert fts_query(search_words(query)) == expected


def test_words_can_be_ored() -> None:
    assert fts_query(["refresh", "token"], any_word=True) == '"refresh" OR "token"'


def test_a_query_of_stopwords_only_keeps_them() -> None:
    assert search_words("how do I") == ["how", "do", "I"]


def test_symbols_and_control_characters_are_not_words() -> None:
    assert search_words("--- ? \x00 ** refresh\x07token") == ["refresh", "token"]


def test_search_words_are_capped() -> None:
    assert len(search_words(" ".join(f"word{n}" for n in range(100)))) == 16


@pytest.mark.parametrize(
    "query",
    [
        'NEAR("a" "b")', "refresh AND", "(token", "token)", "^start", "col:token", "-token", "+token", "token*",
        "OR", "NOT NOT", "a\x00b", "{title heading}: token", "😀 token", 'token"', "'token'", "to\\ken",
    ],
)  # fmt: skip
def test_fts5_syntax_in_a_query_is_searched_as_text(index: DocsIndex, query: str) -> None:
    hits = index.search(query)  # an sqlite3.OperationalError or DocsQueryError here fails the test
    assert isinstance(hits, list)


@pytest.mark.parametrize("query", ["", "   ", "?!", "—", '"', '"" ""', "'", "\\", "\x00\x01"])
def test_a_query_without_words_is_refused_with_a_sentence(index: DocsIndex, query: str) -> None:
    with pytest.raises(DocsQueryError, match="no words to search for; send a few keywords"):
        index.search(query)


def test_an_overlong_query_is_refused(index: DocsIndex) -> None:
    with pytest.raises(DocsQueryError, match=f"longer than {MAX_QUERY_LENGTH} characters"):
        index.search("token " * 50)


def test_an_fts5_failure_reads_as_a_bad_query(index: DocsIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    # Quoting leaves nothing to fail on, so provoke a failure to prove it never escapes as sqlite3's error.
    monkeypatch.setattr("idp_mcp.docs_index.fts_query", lambda words, any_word=False: "AND AND")
    with pytest.raises(DocsQueryError, match="could not be searched") as excinfo:
        index.search("token")
    assert isinstance(excinfo.value.__cause__, sqlite3.OperationalError)


# --- ranking ----------------------------------------------------------------------------------------------------


def _ids(index: DocsIndex, query: str, limit: int = 5) -> list[str]:
    return [f"{hit.section.guide_id}#{hit.section.anchor}" for hit in index.search(query, limit)]


def test_heading_and_title_hits_outrank_repeated_words_in_the_text(index: DocsIndex) -> None:
    assert _ids(index, "refresh token rotation")[0] == "tokens#refresh-token-rotation"
    assert _ids(index, "machine to machine")[0] == "m2m#overview"
    assert _ids(index, "Next.js middleware")[0] == "nextjs#protect-routes"


def test_stemming_matches_other_forms_of_a_word(index: DocsIndex) -> None:
    assert "tokens#refresh-token-rotation" in _ids(index, "rotating refreshed tokens")


def test_sections_with_every_word_come_before_sections_with_some(index: DocsIndex) -> None:
    # "rotation" and "endpoint" are never in one section: the OR fallback finds each.
    assert set(_ids(index, "rotation endpoint")) >= {"tokens#refresh-token-rotation", "tokens#sign-out"}
    assert _ids(index, "refresh rotation") == ["tokens#refresh-token-rotation", "faq#odd-things"]


def test_the_guide_summary_counts_but_less_than_the_text() -> None:
    index = DocsIndex(
        [
            _section("about", "Intro", "Nothing relevant here.", about="Refresh tokens explained."),
            _section("body", "Intro", "Refresh tokens are rotated."),
        ]
    )
    assert _ids(index, "refresh tokens") == ["body#intro", "about#intro"]


def test_limit_caps_the_results(index: DocsIndex) -> None:
    assert len(index.search("token")) == 3  # two sections of "Tokens", and the FAQ
    assert len(index.search("token", limit=1)) == 1


def test_no_match_is_an_empty_list(index: DocsIndex) -> None:
    assert index.search("kubernetes helm") == []


# --- passages ---------------------------------------------------------------------------------------------------


def test_short_text_is_the_passage_as_it_is() -> None:
    assert passage("  Short text.  ") == "Short text."


def test_long_text_is_cut_at_a_word_boundary_with_an_ellipsis() -> None:
    text = "word " * 300
    cut = passage(text, limit=600)
    assert len(cut) <= 602 and cut.endswith(" …")
    assert cut[:-2].split() == ["word"] * len(cut[:-2].split())


def test_text_without_spaces_is_cut_at_the_limit() -> None:
    assert passage("x" * 1000, limit=600) == "x" * 600 + " …"
