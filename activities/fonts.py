"""The letter font: Noto Sans SC, instanced glyph by glyph, and a small font cut for each letter.

Noto Sans SC (SIL Open Font License 1.1) covers Chinese, Latin, Greek, Cyrillic and the symbols
letters use (— € £ ¥ “ ” •). It arrives with the PyPI package ``justmytype-intl-cjk`` as one
variable font of about 31,000 glyphs. Two costs used to make a letter slow: cutting static
Regular and Bold weights from it (about 30 s, once per machine) and having fpdf2 parse a 10 MB
static font for every document (about 0.6 s a letter).

Neither happens now. :class:`LetterFonts` opens the variable font once per process and instances
only the glyphs a letter uses, at the weight it asks for, caching each one (about 1 ms a glyph,
the same outlines and advance widths as fontTools' instancer gives). For each letter it builds a
small static TrueType font holding exactly the letter's characters (a few milliseconds), which
fpdf2 reads and embeds. A character the font lacks is left out of that font, so fpdf2 reports it
and the letter is refused (:class:`activities.letters.MissingGlyphs`), never printed as a box.

Nothing is written outside a temporary folder of the process's own, so there is nothing to
prepare at install, nothing on the worker's start path, and no cache an interrupted process could
leave half-written.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from fontTools.misc.roundTools import otRound
from fontTools.pens.recordingPen import DecomposingRecordingPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTFont, newTable
from fontTools.ttLib.tables._c_m_a_p import cmap_classes
from fontTools.ttLib.tables._g_l_y_f import Glyph

FONT_PACKAGE = "justmytype_intl_cjk"
FONT_FILE = ("fonts", "ofl", "notosanssc", "NotoSansSC[wght].ttf")
FAMILY = "Noto Sans SC"
REGULAR, BOLD = 400, 700
_STYLES = {REGULAR: "Regular", BOLD: "Bold"}


def variable_font() -> Traversable:
    """The packaged variable font (its licence, OFL.txt, lies beside it)."""
    source = resources.files(FONT_PACKAGE)
    for part in FONT_FILE:
        source = source / part
    return source


@dataclass(frozen=True)
class _Outline:
    """One glyph at one weight, compiled: ``data`` goes into a font as it is."""

    data: bytes
    advance: int
    lsb: int
    points: int
    contours: int


class _Weight:
    """The variable font at one weight: glyphs instanced on first use, then kept."""

    def __init__(self, font: TTFont, weight: int) -> None:
        self._glyphs = font.getGlyphSet(location={"wght": weight})
        self._outlines: dict[str, _Outline] = {}

    def outline(self, name: str) -> _Outline:
        kept = self._outlines.get(name)
        if kept is None:
            # Components are drawn into the outline itself, so a glyph never refers to another.
            recording = DecomposingRecordingPen(self._glyphs)
            source = self._glyphs[name]
            source.draw(recording)
            pen = TTGlyphPen(None)
            recording.replay(pen)
            glyph = pen.glyph()
            glyph.recalcBounds(None)
            contours = glyph.numberOfContours
            data = glyph.compile(None, recalcBBoxes=False) if contours else b""
            kept = self._outlines[name] = _Outline(data, otRound(source.width), glyph.xMin if contours else 0,
                                                   len(glyph.coordinates) if contours else 0, contours)
        return kept


class LetterFonts:
    """Noto Sans SC for letters: :meth:`cut` gives a static font of just the characters asked for.

    Thread-safe; meant to live for the whole process (see :func:`letter_fonts`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        with resources.as_file(variable_font()) as path:
            # Read into memory: the package file may be a temporary copy (a zipped install).
            self._font = TTFont(io.BytesIO(Path(path).read_bytes()), lazy=True)
        self._cmap: dict[int, str] = self._font.getBestCmap()
        self._weights: dict[int, _Weight] = {}
        head, hhea, os2, post = (self._font[tag] for tag in ("head", "hhea", "OS/2", "post"))
        self._units = head.unitsPerEm
        self._dates = (head.created, head.modified)
        self._box = (head.xMin, head.yMin, head.xMax, head.yMax)
        self._vertical = dict(ascent=hhea.ascent, descent=hhea.descent, lineGap=hhea.lineGap)
        self._os2 = dict(sTypoAscender=os2.sTypoAscender, sTypoDescender=os2.sTypoDescender,
                         sTypoLineGap=os2.sTypoLineGap, usWinAscent=os2.usWinAscent, usWinDescent=os2.usWinDescent,
                         sxHeight=os2.sxHeight, sCapHeight=os2.sCapHeight, yStrikeoutSize=os2.yStrikeoutSize,
                         yStrikeoutPosition=os2.yStrikeoutPosition, fsType=os2.fsType,
                         achVendID=os2.achVendID, panose=os2.panose)
        self._post = dict(underlinePosition=post.underlinePosition, underlineThickness=post.underlineThickness)
        self._copyright = self._font["name"].getDebugName(0) or ""
        self._licence = self._font["name"].getDebugName(13) or ""

    def _weight(self, weight: int) -> _Weight:
        if weight not in self._weights:
            self._weights[weight] = _Weight(self._font, weight)
        return self._weights[weight]

    def warm(self, text: str, weights: Iterable[int] = (REGULAR, BOLD)) -> None:
        """Instance the glyphs of ``text`` now (e.g. every template's wording, at process start)."""
        for weight in weights:
            self.cut(text, weight)

    def cut(self, characters: str, weight: int = REGULAR) -> bytes:
        """A static TrueType font at ``weight`` holding the glyphs of ``characters`` the font has."""
        with self._lock:
            return self._cut(characters, weight)

    def _cut(self, characters: str, weight: int) -> bytes:
        instance = self._weight(weight)
        codepoints = sorted({ord(ch) for ch in characters} & self._cmap.keys())
        order = [".notdef", *sorted({self._cmap[c] for c in codepoints})]
        outlines = {name: instance.outline(name) for name in order}

        font = TTFont(recalcBBoxes=False, recalcTimestamp=False)
        font.setGlyphOrder(order)
        style = _STYLES.get(weight, str(weight))
        head = font["head"] = newTable("head")
        head.tableVersion, head.fontRevision, head.checkSumAdjustment, head.magicNumber = 1.0, 2.004, 0, 0x5F0F3CF5
        head.flags, head.unitsPerEm = 0x000B, self._units
        # The source font's dates: the same letter gives the same bytes, whenever it is made.
        head.created, head.modified = self._dates
        head.xMin, head.yMin, head.xMax, head.yMax = self._box
        head.macStyle = 1 if weight >= BOLD else 0
        head.lowestRecPPEM, head.fontDirectionHint, head.indexToLocFormat, head.glyphDataFormat = 8, 2, 0, 0

        hhea = font["hhea"] = newTable("hhea")
        hhea.tableVersion = 0x00010000
        for key, value in {**self._vertical, "advanceWidthMax": max(o.advance for o in outlines.values()),
                           "minLeftSideBearing": 0, "minRightSideBearing": 0, "xMaxExtent": 0, "caretSlopeRise": 1,
                           "caretSlopeRun": 0, "caretOffset": 0, "reserved0": 0, "reserved1": 0, "reserved2": 0,
                           "reserved3": 0, "metricDataFormat": 0, "numberOfHMetrics": len(order)}.items():
            setattr(hhea, key, value)

        glyf = font["glyf"] = newTable("glyf")
        glyf.glyphOrder = order
        glyf.glyphs = {name: Glyph(outlines[name].data) for name in order}
        font["loca"] = newTable("loca")
        hmtx = font["hmtx"] = newTable("hmtx")
        hmtx.metrics = {name: (outlines[name].advance, outlines[name].lsb) for name in order}

        maxp = font["maxp"] = newTable("maxp")
        maxp.tableVersion = 0x00010000
        for key in ("maxPoints", "maxContours", "maxCompositePoints", "maxCompositeContours", "maxZones",
                    "maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs", "maxStackElements",
                    "maxSizeOfInstructions", "maxComponentElements", "maxComponentDepth"):
            setattr(maxp, key, 0)
        maxp.maxZones = 2
        maxp.maxPoints = max(o.points for o in outlines.values())
        maxp.maxContours = max(o.contours for o in outlines.values())

        os2 = font["OS/2"] = newTable("OS/2")
        os2.version = 4
        for key, value in {**self._os2, "xAvgCharWidth": otRound(sum(o.advance for o in outlines.values())
                                                                   / len(outlines)),
                           "usWeightClass": weight, "usWidthClass": 5, "fsSelection": 0x20 if weight >= BOLD else 0x40,
                           "ySubscriptXSize": 650, "ySubscriptYSize": 600, "ySubscriptXOffset": 0,
                           "ySubscriptYOffset": 75, "ySuperscriptXSize": 650, "ySuperscriptYSize": 600,
                           "ySuperscriptXOffset": 0, "ySuperscriptYOffset": 350, "sFamilyClass": 0,
                           "ulUnicodeRange1": 0, "ulUnicodeRange2": 0, "ulUnicodeRange3": 0, "ulUnicodeRange4": 0,
                           "usFirstCharIndex": min(codepoints, default=0x20) & 0xFFFF,
                           "usLastCharIndex": min(max(codepoints, default=0x20), 0xFFFF),
                           "ulCodePageRange1": 0, "ulCodePageRange2": 0, "usDefaultChar": 0, "usBreakChar": 0x20,
                           "usMaxContext": 1}.items():
            setattr(os2, key, value)

        post = font["post"] = newTable("post")
        post.formatType, post.italicAngle, post.isFixedPitch = 3.0, 0, 0
        post.minMemType42 = post.maxMemType42 = post.minMemType1 = post.maxMemType1 = 0
        post.underlinePosition, post.underlineThickness = self._post["underlinePosition"], self._post["underlineThickness"]

        cmap = font["cmap"] = newTable("cmap")
        cmap.tableVersion = 0
        basic = cmap_classes[4](4)
        basic.platformID, basic.platEncID, basic.language = 3, 1, 0
        basic.cmap = {c: self._cmap[c] for c in codepoints if c <= 0xFFFF}
        cmap.tables = [basic]
        if codepoints and codepoints[-1] > 0xFFFF:
            full = cmap_classes[12](12)
            full.platformID, full.platEncID, full.language = 3, 10, 0
            full.cmap = {c: self._cmap[c] for c in codepoints}
            cmap.tables.append(full)

        name = font["name"] = newTable("name")
        name.names = []
        full_name = FAMILY if weight == REGULAR else f"{FAMILY} {style}"
        postscript = f"NotoSansSC-{style}"
        for name_id, text in ((0, self._copyright), (1, FAMILY), (2, style), (3, f"2.004;ADBO;{postscript}"),
                              (4, full_name), (5, "Version 2.004"), (6, postscript), (13, self._licence),
                              (14, "https://openfontlicense.org")):
            if text:
                name.setName(text, name_id, 3, 1, 0x409)

        out = io.BytesIO()
        font.save(out)
        return out.getvalue()

    @contextmanager
    def files(self, characters: str, weights: Iterable[int] = (REGULAR, BOLD)) -> Iterator[dict[int, Path]]:
        """The cut fonts as files (fpdf2 reads fonts from paths), removed afterwards."""
        folder = Path(tempfile.mkdtemp(prefix="arrears-letter-fonts-"))
        try:
            paths: dict[int, Path] = {}
            for weight in weights:
                path = folder / f"NotoSansSC-{weight}.ttf"
                path.write_bytes(self.cut(characters, weight))
                paths[weight] = path
            yield paths
        finally:
            shutil.rmtree(folder, ignore_errors=True)


_shared: LetterFonts | None = None
_shared_lock = threading.Lock()


def letter_fonts() -> LetterFonts:
    """The process's :class:`LetterFonts`, opened on first use (about 0.2 s)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = LetterFonts()
    return _shared


__all__ = ["BOLD", "FAMILY", "REGULAR", "LetterFonts", "letter_fonts", "variable_font"]
