"""One list of blocks -> markdown and HTML, so report.md and index.html always say the same thing.

A block is a tuple: ("h", level, text), ("p", text), ("img", src, alt), ("ul", [items]),
("table", [header cells], [[row cells], ...]). Text may use `code` and **bold**, and a well-formed http(s) URL in
it is a link. Nothing else in it is markup, in either output: much of it comes from run files written elsewhere
(run names, notes, family titles, device names, data descriptions), so

- HTML escapes everything (text and attributes), and a link is made only from a well-formed URL (`url`), escaped;
- markdown escapes its own markup: links and images (`[ ]`), HTML tags and entities (`< &`), emphasis
  (`* _ ~`), autolinks of anything but a well-formed URL (`://`, `www.`, `@`), a heading or list marker at the start
  of a block, a stray backtick and the backslash itself; table cells escape `|`;
- control characters are shown as escapes (`\\n`, `inputs.visible`), so a value cannot end its line, cell or item.

Both outputs read a text the same way (`_tokens`): code spans first, by CommonMark's rule (a run of n backticks up to
the next run of exactly n), then `**` in pairs, then URLs.
"""
from __future__ import annotations

import html
import re
from urllib.parse import quote, urlsplit

from .inputs import visible


def to_markdown(blocks) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + _md(block[2]))
        elif kind == "p":
            out.append(_md(block[1]))
        elif kind == "img":
            out.append(f"![{_md_text(visible(block[2]), start=False)}]({quote(block[1])})")  # quoted: no space
        elif kind == "ul":
            out.append("\n".join(f"- {_md(item)}" for item in block[1]))
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = [_md_row(header), "|" + "|".join(" --- " for _ in header) + "|"]
            lines += [_md_row(row) for row in rows]
            out.append("\n".join(lines))
        else:
            raise ValueError(f"unknown block {kind!r}")
    return "\n\n".join(out) + "\n"


def _md_row(cells) -> str:
    # GFM splits a row at every `|` not escaped, inside code spans too (where `\|` still shows as `|`)
    return "| " + " | ".join(_md(str(c), start=False).replace("|", "\\|") for c in cells) + " |"


def to_html(blocks, title: str) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "img":
            src, alt = html.escape(quote(block[1]), quote=True), html.escape(visible(block[2]), quote=True)
            body.append(f'<p><a href="{src}"><img src="{src}" alt="{alt}"></a></p>')
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(str(c))}</th>" for c in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>"
                           for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            raise ValueError(f"unknown block {kind!r}")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
        "img{max-width:100%}table{border-collapse:collapse;font-size:.9em}"
        "td,th{border:1px solid #bbb;padding:.25em .5em;text-align:left}"
        "code{background:#f2f2f2;padding:0 .2em}")


# ---- reading a text: code spans, bold, URLs ----------------------------------------------------------------------

_BACKTICKS = re.compile(r"`+")
_URL_START = re.compile(r"https?://", re.IGNORECASE)
# RFC 3986's characters, less `[ ]` (an IPv6 host, and markdown's link syntax) and `'` (an HTML attribute's end)
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#@!$&()*+,;=%]+")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*")
_WORD = re.compile(r"\S+")
_TRAILING = ".,;:!?*_~"  # sentence punctuation after a URL, not part of it (as GFM's autolinks)


def _tokens(text: str) -> list[tuple]:
    """`text` -> [("text", s) | ("code", fence, content) | ("bold",) | ("url", url)]; unpaired `**` stay text."""
    tokens = []
    for kind, *value in _code_spans(visible(text)):
        if kind == "code":
            tokens.append((kind, *value))
            continue
        parts = value[0].split("**")
        for i, part in enumerate(parts):
            if i:
                tokens.append(("bold",))
            tokens += _urls(part)
    markers = [i for i, t in enumerate(tokens) if t[0] == "bold"]
    if len(markers) % 2:  # the last `**` has no partner: it is two asterisks
        tokens[markers[-1]] = ("text", "**")
    return tokens


def _code_spans(text: str) -> list[tuple]:
    out, start, at = [], 0, 0
    while (fence := _BACKTICKS.search(text, at)) is not None:
        close = next((m for m in _BACKTICKS.finditer(text, fence.end()) if len(m.group()) == len(fence.group())), None)
        if close is None:  # no run of the same length later: these backticks are text
            at = fence.end()
            continue
        out += [("text", text[start:fence.start()]), ("code", fence.group(), text[fence.end():close.start()])]
        start = at = close.end()
    return out + [("text", text[start:])]


def _urls(text: str) -> list[tuple]:
    """A text piece -> text and URL tokens. A URL is linked only when the whole word from `http(s)://` to the next
    space, less trailing punctuation and an unbalanced `)`, is well-formed (`url`)."""
    out, start = [], 0
    for m in _URL_START.finditer(text):
        if m.start() < start:
            continue
        candidate = _WORD.match(text, m.start()).group().rstrip(_TRAILING)
        while candidate.endswith(")") and candidate.count(")") > candidate.count("("):
            candidate = candidate[:-1].rstrip(_TRAILING)
        if url(candidate):
            out += [("text", text[start:m.start()]), ("url", candidate)]
            start = m.start() + len(candidate)
    return [t for t in out + [("text", text[start:])] if t != ("text", "")]


def url(candidate: str) -> bool:
    """Whether `candidate` is a well-formed http(s) URL: URL characters only, and a host of DNS labels."""
    if not _URL_CHARS.fullmatch(candidate):
        return False
    try:
        parts = urlsplit(candidate)
        port = parts.port  # raises for a port that is not a number
    except ValueError:
        return False
    host = parts.hostname or ""
    return (parts.scheme.lower() in ("http", "https") and "@" not in parts.netloc and _HOST.fullmatch(host) is not None
            and (port is None or 0 < port < 65536))


# ---- HTML ----------------------------------------------------------------------------------------------------------

def _inline(text: str) -> str:
    out, bold = [], False
    for kind, *value in _tokens(text):
        if kind == "code":
            content = value[1]
            if content.startswith(" ") and content.endswith(" ") and content.strip():
                content = content[1:-1]  # CommonMark: one space each side is padding
            out.append(f"<code>{html.escape(content, quote=True)}</code>")
        elif kind == "bold":
            out.append("</strong>" if bold else "<strong>")
            bold = not bold
        elif kind == "url":
            link = html.escape(value[0], quote=True)
            out.append(f'<a href="{link}">{link}</a>')
        else:
            out.append(html.escape(value[0], quote=True))
    return "".join(out)


# ---- markdown ------------------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"[\\`*~<\[\]&@]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|:(?=//)|(?<=[wW]{3})\.")
# what makes a block's first line a heading, a quote or a list item (CommonMark: a marker, then a space or the end)
_MD_START = re.compile(r"#{1,6}(?=\s|$)|>|[-+](?=\s|$)|\d{1,9}(?=[.)](?:\s|$))")


def _md(text: str, start: bool = True) -> str:
    """`start`: the text begins a block (a paragraph, heading or list item), not a table cell."""
    out = []
    for kind, *value in _tokens(text):
        if kind == "code":
            out.append(value[0] + value[1] + value[0])
        elif kind == "bold":
            out.append("**")
        elif kind == "url":
            out.append(f"<{value[0]}>")
        else:
            out.append(_md_text(value[0], start=start and not out))
    return "".join(out)


def _md_text(text: str, start: bool) -> str:
    """Plain text in markdown: every character that could start markup escaped; at the start of a block, also a
    heading, quote or list marker (and the spaces that would make it a code block)."""
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(), text)
    if start:
        text = text.lstrip()
        marker = _MD_START.match(text)
        if marker:  # `- x` -> `\- x`, `1. x` -> `1\. x`
            at = marker.end() if marker.group().isdigit() else 0
            text = text[:at] + "\\" + text[at:]
    return text
