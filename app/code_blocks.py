"""Code in answers as chat apps show it: each fenced block highlighted by Pygments (in colours for the light
or the dark theme) under a line with its language and a Copy link; inline code tinted; tables ruled.

Qt's Markdown gives one text block per line of code, marked with the fence's properties. The blocks of one
fence are found, their text highlighted token by token (character formats only, so the text itself and
its selection stay as Qt made them), and a header line is put before them. The Copy link is an anchor
with our own scheme, ``llama-desk-copy:<n>``, handled by the view, never opened.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import (QColor, QFont, QFontDatabase, QTextBlockFormat, QTextCharFormat, QTextCursor, QTextDocument,
                           QTextFormat, QTextFrameFormat, QTextTable)

COPY_SCHEME = "llama-desk-copy"
STYLES = {False: "default", True: "monokai"}   # Pygments styles for a light and a dark background


@dataclass
class CodeBlock:
    language: str
    text: str


def is_code_block(block) -> bool:
    """A line of a fenced or indented code block (a table's header cells do not wrap either: not those)."""
    fmt = block.blockFormat()
    if fmt.hasProperty(QTextFormat.Property.BlockCodeFence) or fmt.hasProperty(QTextFormat.Property.BlockCodeLanguage):
        return True
    return fmt.nonBreakableLines() and QTextCursor(block).currentTable() is None


def code_groups(document: QTextDocument) -> list[tuple[int, int, str]]:
    """(first block number, last block number, language) of each fenced block."""
    groups, block, current = [], document.begin(), None
    while block.isValid():
        if is_code_block(block):
            language = str(block.blockFormat().property(QTextFormat.Property.BlockCodeLanguage) or "")
            if current is None:
                current = [block.blockNumber(), block.blockNumber(), language]
            else:
                current[1] = block.blockNumber()
        elif current is not None:
            groups.append(tuple(current))
            current = None
        block = block.next()
    if current is not None:
        groups.append(tuple(current))
    return groups


def _lexer(language: str):
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound
    try:
        return get_lexer_by_name(language.strip().lower()) if language.strip() else None
    except ClassNotFound:
        return None


def highlight(cursor: QTextCursor, start: int, text: str, language: str, dark: bool) -> None:
    """Colour ``text`` (found at ``start`` in the document) token by token, in Pygments' style."""
    lexer = _lexer(language)
    if lexer is None:
        return
    from pygments.styles import get_style_by_name
    style = get_style_by_name(STYLES[dark])
    offset = 0
    for token, value in lexer.get_tokens(text):
        spec = style.style_for_token(token)
        if value and (spec["color"] or spec["bold"] or spec["italic"]):
            fmt = QTextCharFormat()
            if spec["color"]:
                fmt.setForeground(QColor("#" + spec["color"]))
            if spec["bold"]:
                fmt.setFontWeight(QFont.Weight.Bold)
            if spec["italic"]:
                fmt.setFontItalic(True)
            cursor.setPosition(start + offset)
            cursor.setPosition(start + min(offset + len(value), len(text)), QTextCursor.MoveMode.KeepAnchor)
            cursor.mergeCharFormat(fmt)
        offset += len(value)
        if offset >= len(text):
            break


def decorate(document: QTextDocument, background: QColor, link: QColor, dark: bool) -> list[CodeBlock]:
    """Style every code block, inline code and table of a document made by ``setMarkdown``; returns the code
    blocks, in order (the n-th Copy link copies the n-th)."""
    mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    _style_inline_code_and_tables(document, background)
    groups = code_groups(document)
    blocks = []
    cursor = QTextCursor(document)
    for first, last, language in groups:
        start = document.findBlockByNumber(first).position()
        end_block = document.findBlockByNumber(last)
        end = end_block.position() + end_block.length() - 1
        cursor.setPosition(start)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        text = cursor.selectedText().replace("\u2029", "\n")
        blocks.append(CodeBlock(language, text))
        chars = QTextCharFormat()
        chars.setFontFamilies([mono.family()])
        cursor.mergeCharFormat(chars)
        shade = QTextBlockFormat()
        shade.setBackground(background)
        shade.setLeftMargin(6)
        shade.setRightMargin(6)
        cursor.mergeBlockFormat(shade)
        highlight(cursor, start, text, language, dark)
    for index in range(len(groups) - 1, -1, -1):   # from the end, so earlier positions stay where they are
        _insert_header(document, groups[index][0], blocks[index].language, index, background, link)
    return blocks


def _insert_header(document: QTextDocument, first: int, language: str, index: int, background: QColor,
                   link: QColor) -> None:
    cursor = QTextCursor(document.findBlockByNumber(first))
    cursor.insertBlock()
    cursor.movePosition(QTextCursor.MoveOperation.PreviousBlock)
    header = QTextBlockFormat()
    header.setBackground(background.darker(110) if background.lightness() > 128 else background.lighter(130))
    header.setLeftMargin(6)
    header.setRightMargin(6)
    header.setTopMargin(4)
    cursor.setBlockFormat(header)
    plain = QTextCharFormat()
    plain.setFontPointSize(max(QFont().pointSizeF() - 1, 7))
    label = language or QCoreApplication.translate("MarkdownView", "code")
    cursor.insertText(label + "    ", plain)
    anchor = QTextCharFormat(plain)
    anchor.setAnchor(True)
    anchor.setAnchorHref(f"{COPY_SCHEME}:{index}")
    anchor.setForeground(link)
    anchor.setFontUnderline(False)
    anchor.setToolTip(QCoreApplication.translate("MarkdownView", "Copy this code"))
    cursor.insertText(QCoreApplication.translate("MarkdownView", "Copy"), anchor)


def _style_inline_code_and_tables(document: QTextDocument, background: QColor) -> None:
    block = document.begin()
    while block.isValid():
        if not is_code_block(block):
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.charFormat().fontFixedPitch():
                    cursor = QTextCursor(document)
                    cursor.setPosition(fragment.position())
                    cursor.setPosition(fragment.position() + fragment.length(), QTextCursor.MoveMode.KeepAnchor)
                    tint = QTextCharFormat()
                    tint.setBackground(background)
                    cursor.mergeCharFormat(tint)
                it += 1
        block = block.next()
    for frame in document.rootFrame().childFrames():
        if isinstance(frame, QTextTable):
            cell = frame.cellAt(0, 0)        # Qt's Markdown puts an empty line into a table's first cell
            first = cell.firstCursorPosition().block()   # when a code block comes just before it
            if not first.text() and first != cell.lastCursorPosition().block():
                cursor = QTextCursor(first)
                cursor.movePosition(QTextCursor.MoveOperation.NextBlock, QTextCursor.MoveMode.KeepAnchor)
                cursor.removeSelectedText()
            for column in range(frame.columns()):   # a Markdown table's first row is its header
                header = frame.cellAt(0, column)
                cursor = header.firstCursorPosition()
                cursor.setPosition(header.lastCursorPosition().position(), QTextCursor.MoveMode.KeepAnchor)
                bold = QTextCharFormat()
                bold.setFontWeight(QFont.Weight.Bold)
                cursor.mergeCharFormat(bold)
            fmt = frame.format()
            fmt.setBorder(1)
            fmt.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
            fmt.setBorderBrush(background.darker(150) if background.lightness() > 128 else background.lighter(180))
            fmt.setCellSpacing(0)
            fmt.setCellPadding(4)
            frame.setFormat(fmt)
