"""A guide as HTML for /docs: headings carry the anchors search cites, raw HTML in a guide is text, code is
escaped, and links to other guides point at their pages."""

from __future__ import annotations

from idp_mcp.web.docs import guide_html


def test_headings_carry_their_anchor_ids() -> None:
    html = guide_html("# Sign in\n\n## 1. Create the app\n\n### Next.js middleware\n")
    assert '<h1 id="sign-in">' in html
    assert '<h2 id="1-create-the-app">' in html
    assert '<h3 id="nextjs-middleware">' in html


def test_raw_html_in_a_guide_is_shown_as_text() -> None:
    html = guide_html('Hello <script>alert(1)</script> <img src=x onerror="alert(2)">\n\n<div>block</div>\n')
    assert "<script>" not in html and "<img" not in html and "<div>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;div&gt;block&lt;/div&gt;" in html


def test_code_blocks_are_escaped_and_keep_their_language() -> None:
    html = guide_html('```python\n# file: app.py\nprint("<b>&</b>")\n```\n')
    assert (
        '<pre><code class="language-python"># file: app.py\nprint(&quot;&lt;b&gt;&amp;&lt;/b&gt;&quot;)\n</code></pre>'
        in html
    )


def test_script_links_are_not_rendered_as_links() -> None:
    html = guide_html("[click](javascript:alert(1)) [data](data:text/html,hi)\n")
    assert "href" not in html


def test_links_to_other_guides_point_at_their_docs_pages() -> None:
    html = guide_html("See [FastAPI](integrate-fastapi.md#2-install), [m2m](./machine-to-machine.md), [here](#top).\n")
    assert 'href="/docs/integrate-fastapi#2-install"' in html
    assert 'href="/docs/machine-to-machine"' in html
    assert 'href="#top"' in html


def test_readable_placeholders_are_escaped_text() -> None:
    assert "&lt;your client id&gt;" in guide_html("Client: <your client id>\n")


def test_tables_render() -> None:
    assert "<table>" in guide_html("| a | b |\n|---|---|\n| 1 | 2 |\n")
