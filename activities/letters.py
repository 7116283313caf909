"""Letters as PDF: legal letters and validation notices, in English and Chinese.

A letter's text is the rendered template (see ``templates/<lang>/*.txt``); this module lays it out
on A4 with fpdf2:

- the template's header line (``Lender — Legal Department      Date: …``) becomes the letterhead,
  then the recipient's address block and the title (the ``Subject:`` line);
- paragraphs keep the template's line breaks, and each line is wrapped to the page: at spaces
  for Latin text, between any two characters for Chinese (never before closing punctuation such
  as ``，。：）`` nor after opening punctuation such as ``（“``), and never inside a Latin word or
  an amount such as ``CNY 1,234.56``'s ``1,234.56``;
- indented ``Label:   value`` lines become a two-column table, the amount right-aligned;
- a line ending in ``:`` or ``：`` just before a list or table is a bold heading;
- ``- `` lines are bullets; their indented continuation lines join the bullet;
- every page has a footer with the reference and "Page n of N".

One font sets every language: Noto Sans SC (SIL Open Font License 1.1), from the PyPI package
``justmytype-intl-cjk``. :mod:`activities.fonts` cuts, for each letter, a small static font of just
the characters it holds, at Regular and Bold, from glyphs instanced once per process; fpdf2 embeds
it. A character the font lacks is an error (:class:`MissingGlyphs`), never an empty box in a letter.

The same :class:`LetterDocument` always gives the same bytes: the PDF's creation date is the
letter's date, and nothing else in the file depends on the clock (the ledger keeps the sha256).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import Align, TableBordersLayout, XPos, YPos
from fpdf.fonts import FontFace, TTFFont

from activities.fonts import BOLD, REGULAR, letter_fonts

# --------------------------------------------------------------------------------------------------
# The document and its blocks


@dataclass(frozen=True)
class LetterDocument:
    """One letter, as text: what :func:`render_pdf` lays out."""

    language: str  # "en" | "zh"; any other language is set in the same font, with English labels
    title: str  # the Subject line
    sender: str  # e.g. "Arrears Demo Bank — Legal Department": the letterhead if the body has none
    recipient: list[str]  # borrower name, then address lines (commas / newlines are split)
    date: str  # ISO date: the letter's date and the PDF's creation date
    reference: str  # e.g. "ending 1234", printed small in the footer of every page
    body: str  # the rendered template after the Subject line


@dataclass(frozen=True)
class Letterhead:
    """The body's first line when it holds two parts apart (``Lender — Dept      Date: …``)."""

    left: str
    right: str


@dataclass(frozen=True)
class Paragraph:
    """Lines of text; ``\\n`` separates lines the template broke on purpose."""

    text: str


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Items:
    """Indented ``Label:   value`` lines: (label, value) rows."""

    rows: list[tuple[str, str]]


@dataclass(frozen=True)
class Bullets:
    items: list[str]


Block = Letterhead | Paragraph | Heading | Items | Bullets

_BULLET = re.compile(r"^\s*[-•*·]\s+(?P<text>\S.*)$")
_GAP = re.compile(r"\s{2,}")
_LABELLED = re.compile(r"^(?P<label>.+?[:：])\s*(?P<value>\S.*)$")
_LETTERHEAD = re.compile(r"^(?P<left>\S.*?)\s{3,}(?P<right>\S.*)$")
_HEADING_END = (":", "：")


def _item(line: str) -> tuple[str, str] | None:
    """``  Amount past due:      US$1.00`` → ("Amount past due:", "US$1.00"): split at the first run of
    two or more spaces, else right after the first colon."""
    text = line.strip()
    parts = _GAP.split(text, maxsplit=1)
    if len(parts) == 2:
        return parts[0], parts[1]
    match = _LABELLED.match(text)
    if match:
        return match["label"], match["value"]
    return None


def _join(left: str, right: str) -> str:
    """Join a wrapped continuation line: no space between two CJK characters, one otherwise."""
    left, right = left.rstrip(), right.strip()
    if not left or not right:
        return left + right
    if _is_cjk(left[-1]) and _is_cjk(right[0]):
        return left + right
    return f"{left} {right}"


def _flush(blocks: list[Block], paragraph: list[str], *, before_list: bool) -> None:
    """Close the paragraph lines gathered so far; a last line ending in a colon right before a
    list or table is that list's heading."""
    heading = None
    if before_list and paragraph and paragraph[-1].endswith(_HEADING_END):
        heading = paragraph.pop()
    if paragraph:
        blocks.append(Paragraph("\n".join(paragraph)))
    if heading:
        blocks.append(Heading(heading))
    paragraph.clear()


def parse_blocks(body: str) -> list[Block]:
    """The body's blocks, in order. Blank lines separate blocks; inside one, a ``- `` line starts a
    bullet (indented lines after it continue it), indented ``Label:  value`` lines are table rows,
    a line ending in ``:``/``：`` right before a list or table is its heading, and the rest are
    paragraph lines (their line breaks kept)."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4).split("\n")
    groups: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            groups[-1].append(line.rstrip())
        elif groups[-1]:
            groups.append([])
    groups = [group for group in groups if group]

    blocks: list[Block] = []
    if groups:
        match = _LETTERHEAD.match(groups[0][0])
        if match and not groups[0][0][0].isspace():
            blocks.append(Letterhead(match["left"].strip(), match["right"].strip()))
            groups[0] = groups[0][1:]

    for group in groups:
        paragraph: list[str] = []
        current: Bullets | Items | None = None

        for line in group:
            bullet = _BULLET.match(line)
            indented = line[0].isspace()
            if bullet:
                if not isinstance(current, Bullets):
                    _flush(blocks, paragraph, before_list=True)
                    current = Bullets([])
                    blocks.append(current)
                current.items.append(bullet["text"].strip())
            elif indented and isinstance(current, Bullets):
                current.items[-1] = _join(current.items[-1], line)
            elif indented and (row := _item(line)) is not None:
                if not isinstance(current, Items):
                    _flush(blocks, paragraph, before_list=True)
                    current = Items([])
                    blocks.append(current)
                current.rows.append(row)
            else:
                current = None
                paragraph.append(line.strip())
        _flush(blocks, paragraph, before_list=False)
    return blocks


# --------------------------------------------------------------------------------------------------
# The font


class MissingGlyphs(ValueError):
    """The letter holds characters the font cannot draw: it is not issued with empty boxes."""

    def __init__(self, characters: list[str]) -> None:
        self.characters = characters
        shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in characters[:10])
        more = f" and {len(characters) - 10} more" if len(characters) > 10 else ""
        super().__init__(f"the letter font has no glyph for {shown}{more}")

    def __reduce__(self) -> tuple[type, tuple[list[str]]]:
        # Raised in a rendering process and re-raised in the worker: pickled by its characters.
        return MissingGlyphs, (self.characters,)


FONT_FAMILY = "NotoSansSC"


# --------------------------------------------------------------------------------------------------
# Line breaking

# Characters that may not start a line (closing punctuation) and may not end one (opening ones).
_NO_START = set("，。、：；！？）》」』】〕〗〙〛｝〉’”％‰℃・…‥—～,.:;!?)]}%")
_NO_END = set("（《「『【〔〖〘〚｛〈‘“([{$￥¥£€")
# A word after which a space and a number stay on one line: a currency code or sign, or a number.
_BEFORE_NUMBER = re.compile(r"[A-Z]{3}|[A-Z]{0,3}[$€£¥￥]|\+?\d(?:[\d,.]*\d)?")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x2E80 <= o <= 0x9FFF  # radicals, CJK punctuation, kana, bopomofo, ideographs
        or 0xAC00 <= o <= 0xD7AF  # hangul
        or 0xF900 <= o <= 0xFAFF  # compatibility ideographs
        or 0xFE30 <= o <= 0xFE4F  # CJK compatibility forms
        or 0xFF00 <= o <= 0xFFEF  # full-width forms
        or 0x20000 <= o <= 0x3FFFF  # ideographs, extension B and later
    )


def _clean(text: str) -> str:
    """NFC, tabs as spaces, no invisible or control characters (a stray one in an address is not
    worth failing a letter for, nor printing as a box)."""
    text = unicodedata.normalize("NFC", text).replace("\t", " ").translate(_INVISIBLE)
    return "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) != "Cc")


def _sticks_to_number(text: str, i: int) -> bool:
    """Whether the word before the spaces before ``text[i]`` is a currency or a number: the word is
    what follows the previous space or CJK character (``请致电+1 555`` → ``+1``)."""
    end = i
    while end > 0 and text[end - 1] == " ":
        end -= 1
    start = end
    while start > 0 and text[start - 1] != " " and not _is_cjk(text[start - 1]):
        start -= 1
    word = text[start:end].lstrip("([")
    return bool(word and _BEFORE_NUMBER.fullmatch(word)) or (end > 0 and text[end - 1] in "￥¥")


def _can_break_before(text: str, i: int) -> bool:
    """Whether a line may end before ``text[i]`` (``0 < i < len(text)``)."""
    before, after = text[i - 1], text[i]
    if after == " ":
        return False
    if before == " ":
        # Not inside an amount or a phone number: "CNY 1,234.56", "US$ 5", "+1 555 0100".
        return not (after.isdigit() and _sticks_to_number(text, i))
    if after in _NO_START or before in _NO_END:
        return False
    return _is_cjk(before) or _is_cjk(after)


def wrap(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """``text`` (one line) as lines no wider than ``width``, ``measure(str)`` giving a width.

    Breaks at spaces and between CJK characters (see :func:`_can_break_before`); a word longer than
    a whole line is cut where it must."""
    text = text.strip()
    lines: list[str] = []
    start = 0
    while start < len(text):
        if measure(text[start:]) <= width:
            lines.append(text[start:])
            break
        end, last_break, used = start, None, 0.0
        while end < len(text):
            if end > start and _can_break_before(text, end):
                last_break = end
            used += measure(text[end])
            if used > width and end > start:
                break
            end += 1
        cut = last_break if last_break is not None and text[start:last_break].strip() else end
        lines.append(text[start:cut].rstrip())
        start = cut
        while start < len(text) and text[start] == " ":
            start += 1
    return lines or [""]


# --------------------------------------------------------------------------------------------------
# The PDF

_LABELS = {
    "en": {"page": "Page {n} of {total}", "ref": "Ref. {ref}", "date": "Date: {date}", "lang": "en"},
    "zh": {"page": "第 {n} 页，共 {total} 页", "ref": "参考：{ref}", "date": "日期：{date}", "lang": "zh-CN"},
}

MARGIN = 20.0  # mm, left / right / top
BOTTOM = 22.0  # mm: the footer sits in it
BODY_SIZE = 10.5  # pt
LINE = 5.6  # mm per body line (about 1.5 × the font size, which suits Chinese)
GAP = 2.8  # mm between blocks
INDENT = 6.0  # mm: bullets and the amounts table
TEXT_GREY = 25
RULE_GREY = 170


def _created(date: str) -> datetime:
    moment = datetime.fromisoformat(date.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Letter:
    """Lays one letter out on an FPDF."""

    def __init__(self, doc: LetterDocument, regular: Path, bold: Path) -> None:
        self.doc = doc
        self.labels = _LABELS.get(doc.language, _LABELS["en"])
        pdf = self.pdf = _PDF(self)
        pdf.set_margins(MARGIN, MARGIN, MARGIN)
        pdf.set_auto_page_break(True, margin=BOTTOM)
        pdf.add_font(FONT_FAMILY, "", str(regular))
        pdf.add_font(FONT_FAMILY, "B", str(bold))
        for font in pdf.fonts.values():
            # The cut fonts carry every glyph's bounds already: fpdf2's subset of them is saved
            # as it is instead of re-encoding every outline.
            if isinstance(font, TTFFont):
                font.ttfont.recalcBBoxes = False
        pdf.set_creation_date(_created(doc.date))
        pdf.set_title(_clean(doc.title))
        pdf.set_author(_clean(doc.sender))
        pdf.set_subject(_clean(doc.title))
        pdf.set_creator("Arrears")
        pdf.set_producer("Arrears (fpdf2)")
        pdf.set_lang(self.labels["lang"] if doc.language in _LABELS else doc.language)
        pdf.set_text_color(TEXT_GREY)
        pdf.set_draw_color(RULE_GREY)
        pdf.c_margin = 0

    # text helpers

    def font(self, size: float = BODY_SIZE, bold: bool = False) -> None:
        self.pdf.set_font(FONT_FAMILY, "B" if bold else "", size)

    def lines(self, text: str, width: float | None = None) -> list[str]:
        """``text``'s lines (its own line breaks kept) wrapped to ``width`` (default: the margins)."""
        room = (self.pdf.epw if width is None else width) - 0.05  # below fpdf2's own wrapping
        out: list[str] = []
        for line in _clean(text).split("\n"):
            out.extend(wrap(line, room, self.pdf.get_string_width))
        return out

    def text(self, text: str, height: float = LINE, align: str = "L") -> None:
        self.pdf.multi_cell(0, height, "\n".join(self.lines(text)), align=align,
                            new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    @contextmanager
    def indented(self, by: float) -> Iterator[None]:
        pdf = self.pdf
        before = pdf.l_margin
        pdf.set_left_margin(before + by)
        pdf.set_x(pdf.l_margin)
        try:
            yield
        finally:
            pdf.set_left_margin(before)
            pdf.set_x(before)

    def keep(self, height: float) -> None:
        """Start a new page unless ``height`` more fits on this one."""
        if self.pdf.will_page_break(height):
            self.pdf.add_page()

    # the letter

    def render(self) -> bytes:
        pdf, doc = self.pdf, self.doc
        pdf.add_page()
        blocks = parse_blocks(doc.body)
        head = blocks.pop(0) if blocks and isinstance(blocks[0], Letterhead) else None
        self.letterhead(head.left if head else doc.sender,
                        head.right if head else self.labels["date"].format(date=doc.date))
        self.recipient()
        if doc.title.strip():
            self.font(13, bold=True)
            self.text(doc.title, height=6.6)
            pdf.ln(GAP + 1)
        for block in blocks:
            self.block(block)
        data = bytes(pdf.output())  # also writes the last page's footer
        # fpdf2 only logs characters its font lacks (and draws nothing for them): refuse instead.
        missing = sorted({chr(code) for font in pdf.fonts.values() if isinstance(font, TTFFont)
                          for code in font.missing_glyphs})
        if missing:
            raise MissingGlyphs(missing)
        return data

    def letterhead(self, left: str, right: str) -> None:
        """The sender (bold) on the left, the date on the right, a rule under both."""
        pdf = self.pdf
        self.font(9.5)
        right = _clean(right)
        right_width = min(pdf.get_string_width(right) + 1, pdf.epw / 2)
        y = pdf.get_y()
        self.font(12, bold=True)
        width = pdf.epw - right_width - 4
        pdf.multi_cell(width, 6, "\n".join(self.lines(left, width)), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        bottom = pdf.get_y()
        self.font(9.5)
        pdf.set_xy(pdf.l_margin + pdf.epw - right_width, y + 0.6)
        pdf.multi_cell(right_width, 4.6, "\n".join(self.lines(right, right_width)), align="R",
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_y(max(pdf.get_y(), bottom) + 1.5)
        pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + pdf.epw, pdf.get_y())
        pdf.ln(8)

    def recipient(self) -> None:
        """Name and address, split at newlines; an address line too wide for the block is split at
        its commas, one part a line, and a part still too wide is wrapped."""
        pdf = self.pdf
        width = min(90.0, pdf.epw)
        lines: list[str] = []
        self.font()
        for entry in self.doc.recipient:
            for raw in _clean(entry).split("\n"):
                raw = raw.strip().strip(",，").strip()
                if not raw:
                    continue
                if pdf.get_string_width(raw) <= width:
                    lines.append(raw)
                    continue
                for part in re.split(r"\s*[,，]\s*", raw):
                    if part:
                        lines.extend(self.lines(part, width))
        if lines:
            pdf.multi_cell(width, LINE, "\n".join(lines), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(8)

    def block(self, block: Block) -> None:
        pdf = self.pdf
        if isinstance(block, Paragraph):
            self.font()
            self.text(block.text)
        elif isinstance(block, Heading):
            self.font(bold=True)
            self.keep(LINE * 3)
            self.text(block.text)
            pdf.ln(0.8)
            return
        elif isinstance(block, Bullets):
            self.font()
            for index, item in enumerate(block.items):
                self.keep(LINE)
                y = pdf.get_y()
                pdf.set_xy(pdf.l_margin + 1.5, y)
                pdf.cell(INDENT - 1.5, LINE, "•")
                with self.indented(INDENT):
                    pdf.set_y(y)
                    self.text(item)
                if index < len(block.items) - 1:
                    pdf.ln(1.2)
        elif isinstance(block, Items):
            self.items(block)
        pdf.ln(GAP)

    def items(self, block: Items) -> None:
        pdf = self.pdf
        self.font()
        self.keep(LINE * min(len(block.rows), 2) + 2)  # not a lone row at the foot of a page
        with self.indented(INDENT):
            width = min(pdf.epw, 120.0)
            with pdf.table(
                width=width, col_widths=(60, 40), align=Align.L, text_align=("LEFT", "RIGHT"),
                first_row_as_headings=False, borders_layout=TableBordersLayout.HORIZONTAL_LINES,
                line_height=LINE, padding=(0.8, 1.5), v_align="MIDDLE",
                headings_style=FontFace(family=FONT_FAMILY),
            ) as table:
                for label, value in block.rows:
                    row = table.row()
                    row.cell(_clean(label))
                    row.cell(_clean(value))

    def footer(self) -> None:
        """Reference and "Page n of N", small, at the foot of every page (fpdf2 calls it)."""
        pdf = self.pdf
        self.font(8)
        pdf.set_text_color(110)
        y = pdf.h - BOTTOM + 9
        # fpdf2 writes the page count over the alias once the document is complete. The line is
        # measured with a one-digit count and set left-aligned from there, so that it ends at the
        # right margin (a few points past it from 10 pages on).
        label = self.labels["page"]
        page_width = pdf.get_string_width(label.format(n=pdf.page_no(), total="9"))
        if self.doc.reference:
            pdf.set_xy(pdf.l_margin, y)
            room = pdf.epw - page_width - 4
            reference = self.labels["ref"].format(ref=_clean(self.doc.reference).replace("\n", " "))
            while len(reference) > 1 and pdf.get_string_width(reference) > room:
                reference = reference[:-2] + "…"
            pdf.cell(room, 4, reference)
        pdf.set_xy(pdf.l_margin + pdf.epw - page_width, y)
        pdf.cell(page_width, 4, label.format(n=pdf.page_no(), total=pdf.str_alias_nb_pages))


class _PDF(FPDF):
    def __init__(self, letter: _Letter) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self._letter = letter

    def footer(self) -> None:
        self._letter.footer()


def characters(doc: LetterDocument) -> str:
    """Every character the letter may draw: its texts as given and as cleaned, the labels of its
    language, digits (page numbers) and the marks the layout adds (bullet, ellipsis)."""
    labels = _LABELS.get(doc.language, _LABELS["en"])
    texts = [doc.title, doc.sender, *doc.recipient, doc.date, doc.reference, doc.body, *labels.values()]
    given = "".join(texts)
    return given + _clean(given) + "0123456789 •…"


def render_pdf(doc: LetterDocument) -> bytes:
    """The letter as an A4 PDF; the same document always gives the same bytes.

    Raises :class:`MissingGlyphs` if the text holds a character the font lacks. CPU-bound (about
    20 ms a letter once the process has seen its characters): a worker runs it in its letter
    processes (:class:`activities.letter_press.LetterPress`), never on the event loop."""
    with letter_fonts().files(characters(doc)) as fonts:
        return _Letter(doc, fonts[REGULAR], fonts[BOLD]).render()
