"""Link rewriting and click tokens: what is tracked, what is left alone, and that a token cannot be bent
into a redirect elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playbookd.delivery.clicks import Rewriter, classify, sign, verify

SECRET = b"s3cret"
PUBLIC = "https://cs.acme.example"
UNSUBSCRIBE = f"{PUBLIC}/unsubscribe/abc.def"


def rewriter() -> Rewriter:
    return Rewriter(SECRET, PUBLIC, "7:0:3", keep=(UNSUBSCRIBE, f"{PUBLIC}/unsubscribe/", f"{PUBLIC}/c/"))


def tokens(text: str) -> list[tuple[str, int, str] | None]:
    return [verify(SECRET, part.split('"')[0].split()[0].rstrip(".,)")) for part in text.split(f"{PUBLIC}/c/")[1:]]


def test_links_are_rewritten_but_not_unsubscribe_or_mailto() -> None:
    links = rewriter()
    html = links.html(f'<a href="https://app.example/a?x=1&amp;y=2">A</a> <a href="mailto:m@acme.example">m</a> '
                      f"<a class='b' href='{UNSUBSCRIBE}'>stop</a> <a href=\"https://app.example/b\">B</a>")
    text = links.text(f"See https://app.example/b. Or https://app.example/a?x=1&y=2 ({UNSUBSCRIBE})")
    assert "mailto:m@acme.example" in html and UNSUBSCRIBE in html and UNSUBSCRIBE in text
    assert "app.example" not in html.replace("&amp;", "&").split("/c/")[0]
    assert tokens(html) == [("7:0:3", 0, "https://app.example/a?x=1&y=2"), ("7:0:3", 1, "https://app.example/b")]
    # the same URL in the text part is the same link; the full stop after it stays text
    assert tokens(text) == [("7:0:3", 1, "https://app.example/b"), ("7:0:3", 0, "https://app.example/a?x=1&y=2")]
    assert ". Or" in text


def test_an_altered_or_foreign_token_is_refused() -> None:
    token = sign(SECRET, "7:0:3", 0, "https://app.example/a")
    payload, mac = token.split(".")
    assert verify(SECRET, token) == ("7:0:3", 0, "https://app.example/a")
    assert verify(b"other", token) is None
    assert verify(SECRET, f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}") is None
    assert verify(SECRET, sign(b"other", "7:0:3", 0, "https://evil.example/")) is None
    assert verify(SECRET, f"{payload}=.{mac}") is None
    assert verify(SECRET, "nonsense") is None


def test_scanners_are_told_from_people() -> None:
    sent = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0 Safari/537.36"
    later = sent + timedelta(minutes=5)
    assert classify("GET", browser, sent, later, 10) is None
    assert classify("HEAD", browser, sent, later, 10) == "head"
    assert classify("GET", "Mozilla/5.0 (compatible; Barracuda Sentinel)", sent, later, 10) == "scanner_agent"
    assert classify("GET", "", sent, later, 10) == "scanner_agent"
    assert classify("GET", browser, sent, sent + timedelta(seconds=4), 10) == "too_soon"
    assert classify("GET", browser, None, later, 10) == "too_soon"
