"""Letters as PDF (activities/letters.py): layout blocks, line breaking, the CJK font, and the PDFs
themselves, read back with pypdf: text, fonts, table geometry, pages, determinism."""

from __future__ import annotations

import hashlib
import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont
from pypdf import PdfReader

from activities.fonts import BOLD, REGULAR, letter_fonts, variable_font
from activities.letters import (
    Bullets, Heading, Items, LetterDocument, Letterhead, MissingGlyphs, Paragraph, characters, parse_blocks,
    render_pdf, wrap,
)
from activities.templates import TemplateBook

ROOT = Path(__file__).resolve().parents[1]
BOOK = TemplateBook(ROOT / "templates")
DATE = "2026-03-02"


def values(currency: str) -> dict[str, object]:
    return {
        "earlier_reminders": True,  # a legal letter after the ladder's reminders (tests/test_letter_wording.py: none)
        "lender": "Arrears Demo Bank", "contact_point": "+1 555 0100", "product": "personal loan",
        "loan_tail": "1234", "days_past_due": "45", "response_days": "15", "today": DATE,
        "amount_past_due": f"{currency} 1,234.56", "outstanding": f"{currency} 23,650.00",
        "promise_amount": "", "promise_due_date": "", "instalment_amount": "", "instalment_due_date": "",
    }


def letter(language: str, template: str = "legal_letter", **changes: object) -> LetterDocument:
    jurisdiction, currency = ("CN", "CNY") if language == "zh" else ("US", "USD")
    text = BOOK.render(template, jurisdiction, values(currency))
    fields = {
        "language": language, "title": text.subject or "", "sender": "Arrears Demo Bank — Legal Department",
        "recipient": ["Zhang San", "Room 1203, Building 5, 88 Shiyan Road, Pudong New Area, Shanghai 200120"],
        "date": DATE, "reference": "ending 1234", "body": text.body,
    }
    return LetterDocument(**{**fields, **changes})


def read(pdf: bytes) -> PdfReader:
    return PdfReader(io.BytesIO(pdf))


def page_text(reader: PdfReader) -> list[str]:
    return [page.extract_text() for page in reader.pages]


def runs(reader: PdfReader, page: int = 0) -> list[tuple[str, float, float, str, float]]:
    """Each text run on a page: (text, x, y, font name, size)."""
    found: list[tuple[str, float, float, str, float]] = []

    def visit(text, cm, tm, font, size):
        if text.strip():
            found.append((text.strip(), tm[4], tm[5], str(font.get("/BaseFont")) if font else "", size))

    reader.pages[page].extract_text(visitor_text=visit)
    return found


def run(found, text: str) -> tuple[str, float, float, str, float]:
    return next(r for r in found if r[0] == text)


# --------------------------------------------------------------------------------------------------
# parse_blocks


def test_english_legal_letter_blocks():
    blocks = parse_blocks(BOOK.render("legal_letter", "US", values("USD")).body)
    assert blocks[0] == Letterhead("Arrears Demo Bank — Legal Department", f"Date: {DATE}")
    assert Paragraph("Dear customer,") in blocks
    items = next(b for b in blocks if isinstance(b, Items))
    assert items.rows == [("Amount past due:", "USD 1,234.56"), ("Outstanding balance:", "USD 23,650.00"),
                          ("Days past due:", "45")]
    heading = blocks.index(Heading("Your rights:"))
    bullets = blocks[heading + 1]
    assert isinstance(bullets, Bullets) and len(bullets.items) == 3
    # The indented continuation line joins its bullet, with one space.
    assert "call +1 555 0100; we will pause collection" in bullets.items[0]
    # A paragraph keeps the template's own line breaks (two sentences, two lines).
    assert any(isinstance(b, Paragraph) and b.text.startswith("Please pay") and b.text.count("\n") == 1
               for b in blocks)
    assert blocks[-1] == Paragraph("Yours faithfully,\nArrears Demo Bank Legal Department")


def test_chinese_legal_letter_blocks():
    blocks = parse_blocks(BOOK.render("legal_letter", "CN", values("CNY")).body)
    assert blocks[0] == Letterhead("Arrears Demo Bank 法务部", f"日期：{DATE}")
    items = next(b for b in blocks if isinstance(b, Items))
    assert items.rows == [("逾期金额：", "CNY 1,234.56"), ("未结清余额：", "CNY 23,650.00"), ("逾期天数：", "45")]
    assert Heading("您的权利：") in blocks
    # Lines ending in a full-width colon that stand alone are paragraphs, not headings.
    assert Paragraph("尊敬的客户：") in blocks
    assert Paragraph("经我方多次提醒，您的账户仍处于逾期状态。现将欠款情况及您的选择告知如下：") in blocks
    bullets = next(b for b in blocks if isinstance(b, Bullets))
    assert bullets.items[1] == "如您遇到经济困难，请告知我们，我们将考虑分期、延期或减免利息等方案。"


def test_validation_notice_blocks_both_languages():
    for jurisdiction, heading, count in (("US", "Your rights:", 4), ("CN", "您的权利：", 4)):
        blocks = parse_blocks(BOOK.render("validation_notice", jurisdiction, values("USD")).body)
        assert isinstance(blocks[0], Letterhead) and blocks[0].left == "Arrears Demo Bank"
        bullets = blocks[blocks.index(Heading(heading)) + 1]
        assert isinstance(bullets, Bullets) and len(bullets.items) == count
        assert all("\n" not in item and "  " not in item for item in bullets.items)


def test_block_rules():
    body = (
        "Intro line one\nintro line two\n\n"
        "  Total:   US$5.00\n  逾期天数：30\n\n"
        "您的权利：\n- 第一行\n  续行\n- second\n  continued here\n"
        "Closing line\n\n"
        "A lead-in:\n\n- not a heading above: a blank line separates it\n"
    )
    assert parse_blocks(body) == [
        Paragraph("Intro line one\nintro line two"),
        Items([("Total:", "US$5.00"), ("逾期天数：", "30")]),
        Heading("您的权利："),
        Bullets(["第一行续行", "second continued here"]),  # no space between CJK characters
        Paragraph("Closing line"),
        Paragraph("A lead-in:"),
        Bullets(["not a heading above: a blank line separates it"]),
    ]
    # No letterhead unless the first line holds two parts apart; CRLF and tabs are fine.
    assert parse_blocks("Dear customer,\r\n\r\n\tFee:\tUS$1\r\n") == [
        Paragraph("Dear customer,"), Items([("Fee:", "US$1")])]
    assert parse_blocks("") == []


# --------------------------------------------------------------------------------------------------
# line breaking


def width_in_chars(text: str) -> float:
    return float(len(text))


def test_wrap_chinese_by_character_with_punctuation_rules():
    assert wrap("您的账户仍处于逾期状态", 4, width_in_chars) == ["您的账户", "仍处于逾", "期状态"]
    # "。" may not start a line, so the character before it moves down with it.
    assert wrap("一二三四五六。七八", 6, width_in_chars) == ["一二三四五", "六。七八"]
    # "（" may not end a line.
    assert wrap("一二三四五（六）", 6, width_in_chars) == ["一二三四五", "（六）"]


def test_wrap_keeps_words_amounts_and_phone_numbers_together():
    assert wrap("pay within 15 days", 11, width_in_chars) == ["pay within", "15 days"]
    assert wrap("owed: USD 1,234.56 now", 14, width_in_chars) == ["owed:", "USD 1,234.56", "now"]
    assert wrap("call +1 555 0100 today", 12, width_in_chars) == ["call", "+1 555 0100", "today"]
    assert wrap("请致电+1 555 0100提出", 12, width_in_chars) == ["请致电", "+1 555 0100提", "出"]
    assert wrap("金额（USD 1,234.56）", 15, width_in_chars) == ["金额", "（USD 1,234.56）"]
    assert wrap("金额￥ 1,234.56元", 11, width_in_chars) == ["金额", "￥ 1,234.56元"]
    assert wrap("Room 1203, Building 5, 88 Shiyan Road", 24, width_in_chars) == [
        "Room 1203, Building 5,", "88 Shiyan Road"]
    # A word longer than the line is cut where it must be.
    assert wrap("abcdefghij", 4, width_in_chars) == ["abcd", "efgh", "ij"]
    assert wrap("", 4, width_in_chars) == [""]


# --------------------------------------------------------------------------------------------------
# the font


SAMPLE = "律师函您的权利：，。—€£¥US$1,234.56•“”é Zhang San 王芳"


def _instanced_by_fonttools(weight: int) -> TTFont:
    """The reference: fontTools' instancer on the variable font, subset to SAMPLE first (the
    whole font would take half a minute)."""
    from fontTools import subset
    from fontTools.varLib import instancer

    with io.BytesIO(variable_font().read_bytes()) as source:
        font = TTFont(source)
    subsetter = subset.Subsetter(subset.Options(glyph_names=True, notdef_outline=True, hinting=False,
                                                drop_tables=["GSUB", "GPOS", "GDEF", "BASE"]))
    subsetter.populate(unicodes={ord(ch) for ch in SAMPLE})
    subsetter.subset(font)
    static = instancer.instantiateVariableFont(font, {"wght": weight})
    saved = io.BytesIO()
    static.save(saved)  # as a static font file has it: coordinates rounded to the grid
    return TTFont(io.BytesIO(saved.getvalue()))


@pytest.mark.parametrize("weight", [REGULAR, BOLD])
def test_glyphs_instanced_one_by_one_are_the_instancers_outlines_and_widths(weight: int):
    ours = TTFont(io.BytesIO(letter_fonts().cut(SAMPLE, weight)))
    reference = _instanced_by_fonttools(weight)
    ref_cmap, ref_glyf, ref_hmtx = reference.getBestCmap(), reference["glyf"], reference["hmtx"]
    our_cmap, our_glyf, our_hmtx = ours.getBestCmap(), ours["glyf"], ours["hmtx"]
    assert set(our_cmap) == {ord(ch) for ch in SAMPLE}
    for codepoint in our_cmap:
        mine, theirs = our_glyf[our_cmap[codepoint]], ref_glyf[ref_cmap[codepoint]]
        assert our_hmtx[our_cmap[codepoint]][0] == ref_hmtx[ref_cmap[codepoint]][0], chr(codepoint)
        # Components are drawn into the outline: compare the points as drawn.
        assert (list(mine.getCoordinates(our_glyf)[0]) == list(theirs.getCoordinates(ref_glyf)[0])), chr(codepoint)


def test_a_cut_font_is_a_static_noto_sans_sc_with_just_the_characters_asked_for():
    for weight, style in ((REGULAR, "Regular"), (BOLD, "Bold")):
        font = TTFont(io.BytesIO(letter_fonts().cut("律师函 abc", weight)))
        assert "fvar" not in font and "gvar" not in font and "glyf" in font
        assert font["name"].getDebugName(1) == "Noto Sans SC" and font["name"].getDebugName(2) == style
        assert "SIL Open Font License" in font["name"].getDebugName(13)
        assert font["OS/2"].usWeightClass == weight and bool(font["head"].macStyle & 1) == (weight == BOLD)
        assert set(font.getBestCmap()) == {ord(ch) for ch in "律师函 abc"}
        assert font.getGlyphOrder()[0] == ".notdef"
    # A character the font lacks is left out (fpdf2 then reports it), never mapped to a box.
    assert set(TTFont(io.BytesIO(letter_fonts().cut("a😀", REGULAR))).getBestCmap()) == {ord("a")}
    # Cut twice, the same bytes.
    assert letter_fonts().cut("律师函", BOLD) == letter_fonts().cut("律师函", BOLD)


def test_letters_need_no_prepared_fonts_and_leave_nothing_behind(tmp_path: Path):
    """No font cache: a fresh process renders its first letter straight from the font package, and
    the fonts cut for a letter live only in a temporary folder that is gone afterwards."""
    import subprocess
    import sys
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    code = ("from tests.test_letters import letter; from activities.letters import render_pdf; "
            "import sys; sys.stdout.buffer.write(render_pdf(letter('zh')))")
    env = {**__import__("os").environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "TMPDIR": str(scratch)}
    # Only what this process could leave counts: a worker killed mid-letter elsewhere on the machine
    # (an earlier run's end-to-end test) leaves its folder in the shared temporary directory.
    before = set(Path(tempfile.gettempdir()).glob("arrears-letter-fonts-*"))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "律师函" in page_text(read(done.stdout))[0]
    assert not list(home.rglob("*")) and not list(scratch.iterdir())
    assert set(Path(tempfile.gettempdir()).glob("arrears-letter-fonts-*")) <= before


# --------------------------------------------------------------------------------------------------
# the PDF


def test_english_legal_letter_pdf():
    doc = letter("en")
    reader = read(render_pdf(doc))
    assert len(reader.pages) == 1
    assert reader.pages[0].mediabox.width == pytest.approx(595.28, abs=0.1)  # A4
    assert reader.pages[0].mediabox.height == pytest.approx(841.89, abs=0.1)
    text = page_text(reader)[0]
    assert "Notice before legal action — personal loan account ending 1234" in text
    for line in ("Zhang San", "Room 1203", "Building 5", "88 Shiyan Road", "Pudong New Area", "Shanghai 200120"):
        assert line in text.splitlines()
    assert "Arrears Demo Bank — Legal Department" in text and f"Date: {DATE}" in text
    assert re.search(r"Amount past due:\s+USD 1,234\.56", text)
    assert re.search(r"Outstanding balance:\s+USD 23,650\.00", text)
    assert "Your rights:" in text and "Yours faithfully," in text
    assert "Ref. ending 1234" in text and "Page 1 of 1" in text
    assert reader.metadata.title == doc.title
    assert_whole_letter_shown(doc, text)
    assert reader.metadata["/CreationDate"] == "D:20260302000000Z"


def test_chinese_legal_letter_pdf():
    doc = letter("zh")
    text = page_text(read(render_pdf(doc)))[0]
    for sentence in (
        "律师函（诉前通知）——尾号1234的personal loan账户", "Arrears Demo Bank 法务部", f"日期：{DATE}",
        "尊敬的客户：", "经我方多次提醒，您的账户仍处于逾期状态。现将欠款情况及您的选择告知如下：",
        "请于本函发出之日起15日内归还逾期金额，或与我们联系商定还款安排。",
        "您的权利：", "联系方式：+1 555 0100", "参考：ending 1234", "第 1 页，共 1 页",
    ):
        assert sentence in text, sentence
    assert re.search(r"逾期金额：\s+CNY 1,234\.56", text)
    assert re.search(r"未结清余额：\s+CNY 23,650\.00", text)
    # The long first bullet wraps by character, inside the sentence (there is no space to break at).
    bullet = next(b for b in parse_blocks(doc.body) if isinstance(b, Bullets)).items[0]
    assert bullet not in text and bullet in text.replace("\n", "")
    assert "+1 555 0100" in text  # the phone number did not break
    assert_whole_letter_shown(doc, text)


def assert_whole_letter_shown(doc: LetterDocument, text: str) -> None:
    """Every line of the template's text is in the PDF, whatever the template says today."""
    flat = text.replace("\n", "")
    for block in parse_blocks(doc.body):
        if isinstance(block, Items):
            for label, value in block.rows:
                assert re.search(re.escape(label) + r"\s+" + re.escape(value), text), (label, value)
            continue
        shown = {Letterhead: lambda b: [b.left, b.right], Paragraph: lambda b: b.text.split("\n"),
                 Heading: lambda b: [b.text], Bullets: lambda b: b.items}[type(block)](block)
        for line in shown:
            assert line.replace(" ", "") in flat.replace(" ", ""), line


def test_fonts_embedded_are_noto_sans_sc_with_every_glyph():
    reader = read(render_pdf(letter("zh")))
    page = reader.pages[0]
    text = page.extract_text()
    fonts = [ref.get_object() for ref in page["/Resources"]["/Font"].values()]
    assert sorted(str(f["/BaseFont"]).split("+")[-1] for f in fonts) == ["NotoSansSC", "NotoSansSCBold"]
    covered: set[int] = set()
    for font in fonts:
        assert font["/Subtype"] == "/Type0" and font["/Encoding"] == "/Identity-H" and "/ToUnicode" in font
        descendant = font["/DescendantFonts"][0].get_object()
        assert descendant["/Subtype"] == "/CIDFontType2"
        program = TTFont(io.BytesIO(descendant["/FontDescriptor"]["/FontFile2"].get_object().get_data()))
        assert program["name"].getDebugName(1) == "Noto Sans SC"  # the embedded subset
        covered |= set(program.getBestCmap())
    # Every character shown has a real glyph in the embedded fonts (no .notdef boxes).
    assert {ch for ch in text if not ch.isspace() and ord(ch) not in covered} == set()


def test_headings_and_title_are_bold_and_amounts_right_aligned():
    reader = read(render_pdf(letter("zh")))
    found = runs(reader)
    assert run(found, "您的权利：")[3].endswith("NotoSansSCBold")
    assert run(found, "律师函（诉前通知）——尾号1234的personal loan账户")[3].endswith("NotoSansSCBold")
    assert run(found, "尊敬的客户：")[3].endswith("NotoSansSC")
    # A two-column table: each amount on its label's line, further right, right edges aligned.
    regular = TTFont(io.BytesIO(letter_fonts().cut(characters(letter("zh")), REGULAR)))

    def right_edge(r) -> float:
        cmap, hmtx = regular.getBestCmap(), regular["hmtx"]
        return r[1] + sum(hmtx[cmap[ord(ch)]][0] for ch in r[0]) / regular["head"].unitsPerEm * r[4]

    rows = [("逾期金额：", "CNY 1,234.56"), ("未结清余额：", "CNY 23,650.00"), ("逾期天数：", "45")]
    labels, amounts = [run(found, a) for a, _ in rows], [run(found, b) for _, b in rows]
    assert len({round(label[1], 1) for label in labels}) == 1  # labels share a left edge
    for label, amount in zip(labels, amounts, strict=True):
        assert amount[2] == pytest.approx(label[2], abs=0.5)  # same line
        assert amount[1] > label[1] + 150  # the right-hand column
    edges = [right_edge(a) for a in amounts]
    assert max(edges) - min(edges) < 0.5, edges


def test_validation_notices_render():
    for language in ("en", "zh"):
        doc = letter(language, "validation_notice")
        text = page_text(read(render_pdf(doc)))[0]
        assert doc.title in text and "Zhang San" in text
        assert_whole_letter_shown(doc, text)
        assert re.search(r"\s+(USD|CNY) 23,650\.00", text)


def test_long_letter_paginates_with_footers_on_every_page():
    paragraph = "经我方多次提醒，您的账户仍处于逾期状态。请于本函发出之日起15日内归还逾期金额（CNY 1,234.56）。" * 3
    bullet = "- 如您对本债务全部或部分有异议，可在15日内书面或致电+1 555 0100提出，核实期间我们将暂停催收。\n  续行。"
    section = f"{paragraph}\n\n  逾期金额：    CNY 1,234.56\n  逾期天数：    45\n\n您的权利：\n" + "\n".join([bullet] * 5)
    doc = letter("zh", body="Arrears Demo Bank 法务部     日期：2026-03-02\n\n" + "\n\n".join([section] * 8))
    reader = read(render_pdf(doc))
    pages = page_text(reader)
    assert len(pages) >= 3
    for number, text in enumerate(pages, start=1):
        assert f"第 {number} 页，共 {len(pages)} 页" in text
        assert "参考：ending 1234" in text
    # The body's text, footers left out, as one string (a sentence may go on over a page break).
    whole = "".join(line for text in pages for line in text.splitlines() if not line.startswith("参考："))
    assert whole.count("请于本函发出之日起15日内归还逾期金额（CNY 1,234.56）。") == 24
    assert whole.count("核实期间我们将暂停催收。续行。") == 40
    # Nothing is written into the bottom margin: the footer is the lowest text on every page.
    for index in range(len(pages)):
        found = runs(reader, index)
        footer_y = max(r[2] for r in found if r[0].startswith("第 "))
        assert all(r[2] > footer_y + 20 for r in found if not r[0].startswith(("第 ", "参考")))


def test_letters_rendered_in_threads_at_once_come_out_whole():
    documents = [letter("zh"), letter("en"), letter("zh", recipient=["李雷", "北京市海淀区"]), letter("en")] * 2
    expected = [render_pdf(doc) for doc in documents]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(render_pdf, documents)) == expected


def test_same_letter_same_bytes():
    first, second = render_pdf(letter("zh")), render_pdf(letter("zh"))
    assert first == second
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    later = render_pdf(letter("zh", date="2026-03-03"))
    assert later != first and read(later).metadata["/CreationDate"] == "D:20260303000000Z"


def test_missing_glyph_is_an_error():
    with pytest.raises(MissingGlyphs) as raised:
        render_pdf(letter("en", recipient=["Zhang San 😀", "Address"]))
    assert raised.value.characters == ["😀"]
    with pytest.raises(MissingGlyphs):
        render_pdf(letter("en", reference="नमस्ते"))  # footer text is checked too


def test_recipient_lines_and_invisible_characters():
    doc = letter("fr", recipient=["Jane\u200b Doe", "12 High Street, Springfield\nIL 62701"], body="Dear customer,\n")
    text = page_text(read(render_pdf(doc)))[0]
    lines = text.splitlines()
    assert "Jane Doe" in lines and "12 High Street, Springfield" in lines and "IL 62701" in lines
    assert "Dear customer," in lines
    # Without a letterhead line in the body, the sender and the date come from the document;
    # a language without its own labels gets the English ones.
    assert "Arrears Demo Bank — Legal Department" in text and f"Date: {DATE}" in text and "Page 1 of 1" in text


# -- the letter activity -------------------------------------------------------------------------

async def test_a_chinese_borrower_gets_a_pdf_letter_in_chinese_kept_by_path_and_hash(tmp_path: Path, ledger):
    import hashlib

    from activities.models import CaseFacts, ContactRequest
    from infra.settings import Settings
    from tests.conftest import make_loan
    from worker import build_activities

    activities = build_activities(Settings(data_dir=tmp_path), ledger)
    loan = make_loan(jurisdiction="CN", currency="CNY", timezone="Asia/Shanghai", phone="+8613800138000",
                     borrower_name="王芳", address="上海市浦东新区示例路88号")
    request = ContactRequest(idempotency_key=f"{loan.loan_id}/00007/legal_letter/letter", loan=loan,
                             template="legal_letter", facts=CaseFacts(stage="legal_letter", days_past_due=96,
                                                                      amount_past_due="3800.00",
                                                                      outstanding="52000.00", response_days=15))
    try:
        receipt = await activities.issue_letter(request)
        again = await activities.issue_letter(request)
        [attempt] = await activities.ledger.attempts(loan.loan_id)
    finally:
        await activities.aclose()
    path = Path(receipt.location)
    assert path.parent == tmp_path / "letters" and path.suffix == ".pdf"
    assert receipt.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == attempt["sha256"]
    assert again == receipt and attempt["tries"] == 1
    text = "\n".join(page_text(read(path.read_bytes())))
    assert "王芳" in text and "上海市浦东新区示例路88号" in text
    assert "CNY 3,800.00" in text and "您的权利" in text and "异议" in text
