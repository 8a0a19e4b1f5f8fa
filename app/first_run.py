"""The first-run dialog: the built-in model is already loading; LLaMA2/3 files can be chosen or downloaded.

It does not block: the window behind it is usable, and the built-in model answers as soon as it
is loaded. Whatever the user picks, the dialog is not shown again (Settings > Model has the same).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout

from .model_setup import ModelSetupForm
from .preferences import ModelChoice


class FirstRunDialog(QDialog):
    chosen = Signal(object)               # the ModelChoice to load (the built-in one means: keep it)

    def __init__(self, choice: ModelChoice, parent=None):
        super().__init__(parent)
        self.setWindowTitle(self.tr("Welcome to llama-desk"))
        self.resize(700, 560)
        intro = QLabel(self.tr(
            "<p>llama-desk runs LLaMA2 and LLaMA3 on this computer, offline.</p>"
            "<p>The small built-in model is loading now, so you can start chatting at once. For better "
            "answers, choose your LLaMA2/LLaMA3 MindSpore files below, or download them (13-16 GB; "
            "loading them needs about 30 GB of memory today, or half with 8-bit weights).</p>"))
        intro.setWordWrap(True)
        self.form = ModelSetupForm(choice, self)
        buttons = QDialogButtonBox()
        self.keep = buttons.addButton(self.tr("Keep the built-in model"), QDialogButtonBox.ButtonRole.RejectRole)
        self.use = buttons.addButton(self.tr("Use this model"), QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.form, 1)
        layout.addWidget(buttons)

    def accept(self) -> None:
        problem = self.form.save_models_folder()
        if problem:
            self.form.result.setText(problem)
            return
        self.chosen.emit(self.form.choice())
        super().accept()
