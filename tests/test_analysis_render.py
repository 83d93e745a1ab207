"""Text from run files stays text in index.html and report.md (issue 31): a run's note, name, family title, device
name, commit or data description may hold markup, and neither output may turn it into any (analysis/render.py).
The checks here read the outputs as a browser and a markdown renderer would (html.parser; CommonMark's code spans,
escapes and block markers), independently of how render.py writes them."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from analysis import report
from analysis.inputs import visible
from analysis.render import to_html, to_markdown, url
from tests.helpers.runs import edit_run_json, write_inspection, write_run

HOSTILE = [
    'https://x"onmouseover="alert(1)',
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "![t](https://e.example/track.png)",
    "# heading", "- item", "+ item", "1. item", "2) item", "> quote", "     code block",
    "a | b | c",
    "*em* _em_ ~~del~~ __strong__",
    "&lt;b&gt; &amp; &#60;",
    "www.evil.example mail@evil.example",
    "line\nbreak\rreturn\x1b[31mred\u2028separator\x00nul",
    "back\\slash \\[x\\] \\",
    "javascript:alert(1)",
    "<!-- comment --> <?php ?> <![CDATA[x]]>",
]
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "a", "img", "ul", "li",
                "table", "thead", "tbody", "tr", "th", "td", "code", "strong"}


class Page(HTMLParser):
    """What a browser sees: the tags with their attributes, and the text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.texts, self.other = [], [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)

    def handle_comment(self, data):
        self.other.append(("comment", data))

    def handle_pi(self, data):
        self.other.append(("pi", data))

    def unknown_decl(self, data):
        self.other.append(("decl", data))

    @property
    def text(self) -> str:
        return "".join(self.texts)


def assert_inert_html(html: str, images=()) -> Page:
    page = Page(html)
    assert not page.other
    for tag, attrs in page.tags:
        assert tag in ALLOWED_TAGS, tag
        assert set(attrs) <= {"href", "src", "alt", "charset"}, attrs
        for name in ("href", "src"):
            if name in attrs:
                assert attrs[name] in images or url(attrs[name]), attrs
    return page


# what a CommonMark renderer acts on, outside code spans and backslash escapes
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
ESCAPED = re.compile(r"\\[!-/:-@\[-`{-~]")
AUTOLINK = re.compile(r"<https?://[^\s<>]+>")
MARKUP = re.compile(r"[<\[\]&*~@]|://|www\.|(?<!\w)_|_(?!\w)")  # `>` alone is markup only at a line's start
BLOCK_START = re.compile(r"(#{1,6}|[-+*]|\d{1,9}[.)]|>)(\s|$)")


def markup(md_text: str) -> list[str]:
    """Markup a renderer would act on in a line of text (images and our `**` pairs aside), outside code spans."""
    text = AUTOLINK.sub("", ESCAPED.sub("", CODE_SPAN.sub("", md_text))).replace("**", "")
    return MARKUP.findall(text)


def unescaped(md_text: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", AUTOLINK.sub(lambda m: m.group()[1:-1], md_text))


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_stays_text_in_html(text):
    blocks = [("h", 2, text), ("p", text), ("ul", [text, text]), ("table", [text], [[text]]), ("img", "fig6.png", text)]
    page = assert_inert_html(to_html(blocks, "t"), images={"fig6.png"})
    assert page.text.count(visible(text)) == 6  # heading, paragraph, two items, two cells: the text, all of it
    assert ("img", {"src": "fig6.png", "alt": visible(text)}) in page.tags


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_stays_text_in_markdown(text):
    md = to_markdown([("h", 2, text), ("p", text), ("ul", [text, text]), ("table", [text], [[text]]),
                      ("img", "fig6.png", text)])
    heading, paragraph, items, table, image = md.strip().split("\n\n")
    (item1, item2), (header, _, cell) = items.split("\n"), table.split("\n")
    assert heading.startswith("## ") and not BLOCK_START.match(heading[3:])
    for line in (paragraph, item1[2:], item2[2:]):
        assert not BLOCK_START.match(line) and not markup(line), line
        assert unescaped(line) == visible(text).lstrip()
    for row in (header, cell):
        cells = re.split(r"(?<!\\)\|", row)
        assert len(cells) == 3 and not markup(cells[1].replace("\\|", "")), row  # one cell, no markup in it
    assert image.startswith("![") and image.endswith("](fig6.png)") and not markup(image[2:-len("](fig6.png)")])


@pytest.mark.parametrize("candidate, linked", [
    ("https://arxiv.org/abs/1512.03385", True),
    ("http://example.org:8080/a?b=c#d", True),
    ('https://x"onmouseover="alert(1)', False),
    ("https://x'onmouseover='alert(1)", False),
    ("https://good.example@evil.example/", False),  # userinfo: the host is not what it reads as
    ("https://[::1]/", False),
    ("https://x.org/[a](javascript:alert(1))", False),
    ("https://-bad-.example/", False),
    ("https://x.org:99999/", False),
    ("javascript://x.org/%0aalert(1)", False),
    ("ftp://x.org/", False),
])
def test_links_are_made_only_from_well_formed_http_urls(candidate, linked):
    page = assert_inert_html(to_html([("p", f"see {candidate} here")], "t"))
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert links == ([candidate] if linked else [])
    assert page.text.strip().endswith(f"see {candidate} here")
    md = to_markdown([("p", f"see {candidate} here")])
    assert (f"<{candidate}>" in md) == linked and not markup(md)


def test_code_spans_and_bold_from_our_text_render_in_both():
    text = "**Verdict: x.** see `a<b>` and ``a`b`` (https://arxiv.org/abs/1512.03385)"
    assert to_markdown([("p", text)]) == ("**Verdict: x.** see `a<b>` and ``a`b`` (<https://arxiv.org/abs/1512.03385>)"
                                          "\n")
    body = to_html([("p", text)], "t").split("<body>\n")[1]
    assert body.startswith('<p><strong>Verdict: x.</strong> see <code>a&lt;b&gt;</code> and <code>a`b</code> (<a '
                           'href="https://arxiv.org/abs/1512.03385">https://arxiv.org/abs/1512.03385</a>)</p>')


# ---- the report ----------------------------------------------------------------------------------------------------

def hostile(field: str, slash: bool = True) -> str:
    """A value for `field` that tries every kind of markup at once (no `/` in a directory name)."""
    value = f'{field}<img src=x onerror=alert(1)>[l](javascript:x)|# *e* ~~d~~ &amp; $\\frac{{$\nnext'
    return value + (' https://x"onmouseover="alert(1)' if slash else "")


def test_hostile_strings_in_every_field_the_report_shows_stay_text(tmp_path, quick_figures):
    runs = tmp_path / hostile("dir", slash=False) / "runs"
    write_run(runs, 20, False, 0, (1.0, 9.0))
    write_run(runs, 56, False, 0, (3.0, 13.0))
    name = hostile("run", slash=False)
    run = write_run(runs, 20, True, 0, (0.8, 8.6), name=name)
    write_inspection(run, 20, True, status="failed", notes=[hostile("inspection note")])
    edit_run_json(run, lambda info: info.update(
        notes=[hostile("note")], data_description=hostile("data"), device_name=hostile("device"),
        git_commit=hostile("commit"), versions={k: hostile(k) for k in ("python", "torch", "torchvision")},
        ended_at=hostile("ended")))
    failed = write_run(runs, 3, False, 0, (5.0, 20.0), arch="minimodel", status="failed", name="failed",
                       family={"name": "minimodel", "label": hostile("label"), "title": hostile("title")})
    edit_run_json(failed, lambda info: info.update(message=hostile("message"), status="failed"))
    metrics = pd.read_csv(failed / "metrics.csv")
    metrics["protocol"] = hostile("protocol")
    metrics.to_csv(failed / "metrics.csv", index=False)
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out), "--reference", "none"]) == 0

    images = {p.name for p in out.glob("*.png")}
    page = assert_inert_html((out / "index.html").read_text(), images)
    fields = ["dir", "run", "inspection note", "note", "data", "device", "commit", "python", "torch", "torchvision",
              "ended", "message", "title", "protocol"]
    for field in fields:
        assert f"{field}<img src=x onerror=alert(1)>[l](javascript:x)|# *e* ~~d~~ &amp; $\\frac{{$\\nnext" in page.text, \
            field
    assert "minimodel-plain-3" in page.text  # a label must be one safe name: the family's nets are named by its name

    md = (out / "report.md").read_text()
    for block in md.split("\n\n"):
        lines = block.split("\n")
        if lines[0].startswith("|"):  # a table: one row a line, each cell text
            assert all(line.startswith("|") and line.endswith("|") for line in lines), block
            for line in lines:
                assert not [m for cell in re.split(r"(?<!\\)\|", line) for m in markup(cell.replace("\\|", ""))], line
            continue
        for line in lines:
            if line.startswith("!["):
                assert re.fullmatch(r"!\[.*\]\([\w.]+\.png\)", line) and not markup(line[2:line.rindex("](")]), line
                continue
            content = re.sub(r"^(#{1,3} |- )", "", line)
            assert not BLOCK_START.match(content) and not markup(content), line
    assert all(not str(cell).startswith(("=", "+", "-", "@"))
               for cell in pd.read_csv(out / "table6.csv").astype(str).to_numpy().ravel())
    assert Path(out / "minimodel_fig6.png").exists()  # its title ($\frac{$) drawn as text, not as mathtext
