"""Read-only rich text that grows to fit its content: Qt's own Markdown, code blocks highlighted (code_blocks.py),
links opened only after a confirmation."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QCursor, QDesktopServices, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QFrame, QMessageBox, QSizePolicy, QTextBrowser, QToolTip

from .code_blocks import COPY_SCHEME, CodeBlock, decorate

SAFE_SCHEMES = ("http", "https", "mailto")    # the only links an answer may open, after a confirmation


def code_background(palette: QPalette) -> QColor:
    """A tint between the text and its background, readable in light and dark themes."""
    base, text = palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text)
    mix = 0.08 if base.lightness() > 128 else 0.14
    return QColor(*(round(a + (b - a) * mix) for a, b in ((base.red(), text.red()), (base.green(), text.green()),
                                                          (base.blue(), text.blue()))))


def keep_line_breaks(markdown: str) -> str:
    """Every line break in a chat answer is kept, as chat apps do (Markdown joins single lines into one
    paragraph, so a poem became one line): a hard break is added at each line's end outside code fences."""
    lines = markdown.split("\n")
    fence = ""
    for i, line in enumerate(lines[:-1]):
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence):
                fence = ""
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        table_row = stripped.startswith("|") or lines[i + 1].lstrip().startswith("|")
        if stripped and lines[i + 1].strip() and not table_row and not line.endswith(("  ", "\\")):
            lines[i] = line + "  "
    return "\n".join(lines)


class MarkdownView(QTextBrowser):
    """One message's text. ``set_text`` re-renders; the widget's height follows the document."""

    codeCopied = Signal(int)              # the n-th code block was copied with its Copy link

    def __init__(self, parent=None, markdown: bool = True):
        super().__init__(parent)
        self.markdown = markdown
        self.source_text = ""
        self.code_blocks: list[CodeBlock] = []
        self._rendered_with: tuple | None = None
        self.setFrameShape(QFrame.Shape.NoFrame)
        # A model's answer may hold any link: never follow one by itself (file: and relative links would
        # load a local file here; on Windows any registered protocol handler could start)
        self.setOpenExternalLinks(False)
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._link_clicked)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.document().setDocumentMargin(2)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)

    def set_text(self, text: str) -> None:
        self.source_text = text
        if self.markdown:
            self.setMarkdown(keep_line_breaks(text))
            self._rendered_with = self._colours()
            self.code_blocks = decorate(self.document(), *self._rendered_with)
        else:
            self.setPlainText(text)
        self._fit()

    def _link_clicked(self, url: QUrl) -> None:
        """Web and mail links open after the user has seen the full address and agreed; others never."""
        address = url.toString()
        if url.scheme() == COPY_SCHEME:   # a code block's Copy link
            index = int(url.path()) if url.path().isdigit() else -1
            if 0 <= index < len(self.code_blocks):
                QGuiApplication.clipboard().setText(self.code_blocks[index].text)
                self.codeCopied.emit(index)
            return
        if url.scheme().lower() not in SAFE_SCHEMES:
            QToolTip.showText(QCursor.pos(), self.tr("Not opened: only web (http, https) and mail links are "
                                                     "opened from answers.\n{0}").format(address), self)
            return
        answer = QMessageBox.question(self.window(), self.tr("Open link"),
                                      self.tr("Open this address?\n\n{0}").format(address))
        if answer == QMessageBox.StandardButton.Yes:
            QDesktopServices.openUrl(url)

    def event(self, event) -> bool:
        palette_changed = event.type() in (QEvent.Type.ApplicationPaletteChange, QEvent.Type.PaletteChange)
        if palette_changed and self.markdown and self.source_text and self._colours() != self._rendered_with:
            self.set_text(self.source_text)   # the code colours of the new theme
        return super().event(event)

    @staticmethod
    def _colours() -> tuple[QColor, QColor, bool]:
        """Code background, link colour, dark or not: from the application's palette (this widget's own Base is
        transparent: it sits on its card)."""
        palette = QApplication.palette()
        return (code_background(palette), palette.color(QPalette.ColorRole.Link),
                palette.color(QPalette.ColorRole.Base).lightness() < 128)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self, *_args) -> None:
        self.document().setTextWidth(self.viewport().width())
        height = int(self.document().size().height()) + 2 * self.frameWidth()
        bar = self.horizontalScrollBar()
        if bar.isVisible():
            height += bar.sizeHint().height()
        if height != self.height():
            self.setFixedHeight(max(height, self.fontMetrics().height() + 4))

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.height())
