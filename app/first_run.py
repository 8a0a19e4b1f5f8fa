"""The first-run dialog: the built-in model is already loading; a LLaMA chat model can be chosen or downloaded.

It does not block: the window behind it is usable, and the built-in model answers as soon as it
is loaded. It says what this PC has (memory, free disk) against what each model needs, and which
downloads are chat models and which are base models (those only continue a text). Whatever the
user picks, the dialog is not shown again (Settings > Model and the Models page have the same).
"""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout

from .download_panel import human_bytes
from .model_catalog import TITLES, free_disk_bytes, manifest_kinds, plan_memory, total_ram_bytes
from .model_setup import ModelSetupForm
from .preferences import ModelChoice
from .theme import show_problem


class FirstRunDialog(QDialog):
    chosen = Signal(object)               # the ModelChoice to load (the built-in one means: keep it)

    def __init__(self, choice: ModelChoice, parent=None, downloads=None):
        super().__init__(parent)
        self.setWindowTitle(self.tr("Welcome to llama-desk"))
        self.resize(760, 640)
        self.form = ModelSetupForm(choice, self, downloads)  # the app's download: goes on when this closes
        self.intro = QLabel(self.intro_text())
        self.intro.setWordWrap(True)
        buttons = QDialogButtonBox()
        self.keep = buttons.addButton(self.tr("Keep the built-in model"), QDialogButtonBox.ButtonRole.RejectRole)
        self.use = buttons.addButton(self.tr("Use this model"), QDialogButtonBox.ButtonRole.AcceptRole)
        self.form.checked.connect(self._grow_later)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.form, 1)
        layout.addWidget(buttons)

    def intro_text(self) -> str:
        from engine import paths
        ram, disk = total_ram_bytes(), free_disk_bytes(self.form.models_folder_path())
        needs = []                        # the chat sets (the base ones have the same shapes)
        for key, version in (("llama3-hf", 3), ("llama2-hf", 2)):
            plan = plan_memory(paths.default_model_files(version)["config"])
            needs.append(self.tr("{0}: about {1} of memory as stored, {2} with 8-bit weights, {3} with 4-bit "
                                 "weights").format(TITLES[key], human_bytes(plan.total()),
                                                   human_bytes(plan.total("int8")), human_bytes(plan.total("int4"))))
        base = [TITLES.get(k, k) for k, kind in manifest_kinds().items() if kind == "base"]
        return self.tr(
            "<p>llama-desk runs LLaMA2 and LLaMA3 on this computer, offline.</p>"
            "<p>The small built-in model is loading now, so you can start chatting at once. For better answers, "
            "choose a LLaMA chat model below and download it (13-16 GB), or choose files you have.{3}</p>"
            "<p>This PC has {0} of memory and {1} free in the models folder. {2}.</p>").format(
            human_bytes(ram), human_bytes(disk), "; ".join(needs), " " + self.tr(
                "{0}: base models. A base model continues the text it is given; it is not a chat assistant, and "
                "its answers are weaker than a chat model's.").format(", ".join(base)) if base else "")

    def _grow_later(self, *_args) -> None:
        QTimer.singleShot(0, self._grow)

    def _grow(self) -> None:
        """A long message (the engine's, or how to get the files) is shown whole: the dialog grows to fit it."""
        need = self.layout().totalHeightForWidth(self.width()) if self.layout().hasHeightForWidth() else \
            self.sizeHint().height()
        if need > self.height():
            self.resize(self.width(), need)

    def accept(self) -> None:
        """Take the choice only once its files passed the engine's check (run now if it has not)."""
        problem = self.form.save_models_folder()
        if problem:
            self.form.result.setText(problem)
            show_problem(self.form.result, True)
            return
        if self.form.check_then(self.accept):
            self.chosen.emit(self.form.choice())
            super().accept()

    def done(self, result: int) -> None:
        self.form.stop_work()
        super().done(result)
