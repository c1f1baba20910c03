"""Reading the progress display's HTML in tests: the text of each table row's cells, and every
tag seen (to check that no ``<script>`` slipped in)."""

from __future__ import annotations

from html.parser import HTMLParser


class HtmlTable(HTMLParser):
    """Feed it HTML; ``rows`` holds each ``<tr>``'s cell texts, ``tags`` every tag name."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_table(html: str) -> HtmlTable:
    table = HtmlTable()
    table.feed(html)
    return table
