"""One list of blocks -> markdown and HTML, so report.md and index.html always say the same thing.

A block is a tuple: ("h", level, text), ("p", text), ("img", src, alt), ("ul", [items]),
("table", [header cells], [[row cells], ...]). Text may use `code` and **bold**.
"""
from __future__ import annotations

import html
import re


def to_markdown(blocks) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = [_md_row(header), "|" + "|".join(" --- " for _ in header) + "|"]
            lines += [_md_row(row) for row in rows]
            out.append("\n".join(lines))
        else:
            raise ValueError(f"unknown block {kind!r}")
    return "\n\n".join(out) + "\n"


def _md_row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def to_html(blocks, title: str) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "img":
            src, alt = html.escape(block[1], quote=True), html.escape(block[2], quote=True)
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


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(https?://[^\s)<,;]+)", r'<a href="\1">\1</a>', text)
