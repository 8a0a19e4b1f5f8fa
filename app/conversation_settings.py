"""Generation settings: a form (used for the app's defaults and per conversation) and the per-conversation dialog.

Values are checked by the engine's own ``GenerationSettings`` before they are kept, and its
message is shown as is.
"""

from __future__ import annotations

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QLabel,
                               QPlainTextEdit, QSpinBox, QVBoxLayout, QWidget)

from .engine_messages import localized
from .preferences import GENERATION_FIELDS, ChatDefaults, generation_values
from .storage import Conversation
from .theme import show_problem


def check_values(values: dict) -> str | None:
    """The engine's message when these settings are not valid, else None."""
    from engine import GenerationError, GenerationSettings
    try:
        GenerationSettings(**values)
    except GenerationError as exc:
        return localized(exc)
    return None


class GenerationForm(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.temperature = self._double(0.0, 2.0, 0.05, self.tr("0 always picks the most likely token"))
        self.top_k = QSpinBox(minimum=0, maximum=1000)
        self.top_k.setToolTip(self.tr("Only the k most likely tokens are considered (0: off)"))
        self.top_p = self._double(0.01, 1.0, 0.01, self.tr("Smallest set of tokens whose probability adds up to p "
                                                           "(1: off)"))
        self.repetition_penalty = self._double(0.5, 2.0, 0.05, self.tr("Above 1 makes repeating recent words "
                                                                       "less likely (1: off)"))
        self.max_new_tokens = QSpinBox(minimum=1, maximum=32768, singleStep=64)
        self.seed = QSpinBox(minimum=-1, maximum=2 ** 31 - 1)
        self.seed.setSpecialValueText(self.tr("Random"))
        self.seed.setToolTip(self.tr("The same seed and settings give the same answer"))
        self.lookup = QComboBox()
        self.lookup.addItem(self.tr("Automatic (while it pays)"), "auto")
        self.lookup.addItem(self.tr("On"), "on")
        self.lookup.addItem(self.tr("Off"), "off")
        self.lookup.setToolTip(self.tr("Guesses the next words from the conversation and checks several at once: "
                                       "faster where an answer repeats its question (code, quotes), same answers"))
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.tr("Temperature"), self.temperature)
        form.addRow(self.tr("Top-k"), self.top_k)
        form.addRow(self.tr("Top-p"), self.top_p)
        form.addRow(self.tr("Repetition penalty"), self.repetition_penalty)
        form.addRow(self.tr("Maximum answer length (tokens)"), self.max_new_tokens)
        form.addRow(self.tr("Seed"), self.seed)
        form.addRow(self.tr("Lookup decoding"), self.lookup)

    @staticmethod
    def _double(low: float, high: float, step: float, tip: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox(minimum=low, maximum=high, singleStep=step, decimals=2)
        box.setToolTip(tip)
        return box

    def set_values(self, values: dict) -> None:
        self.temperature.setValue(values["temperature"])
        self.top_k.setValue(values["top_k"])
        self.top_p.setValue(values["top_p"])
        self.repetition_penalty.setValue(values["repetition_penalty"])
        self.max_new_tokens.setValue(values["max_new_tokens"])
        self.seed.setValue(-1 if values["seed"] is None else values["seed"])
        self.lookup.setCurrentIndex(max(self.lookup.findData(values.get("lookup", "auto")), 0))

    def values(self) -> dict:
        return {"temperature": round(self.temperature.value(), 4), "top_k": self.top_k.value(),
                "top_p": round(self.top_p.value(), 4), "repetition_penalty": round(self.repetition_penalty.value(), 4),
                "max_new_tokens": self.max_new_tokens.value(),
                "seed": None if self.seed.value() < 0 else self.seed.value(), "lookup": self.lookup.currentData()}


class ConversationSettingsDialog(QDialog):
    """System prompt and generation settings of one conversation; what equals the defaults is not stored."""

    def __init__(self, conversation: Conversation, defaults: ChatDefaults, parent=None):
        super().__init__(parent)
        self.defaults = defaults
        self.setWindowTitle(self.tr("Conversation settings: {0}").format(conversation.title))
        self.use_default_prompt = QCheckBox(self.tr("Use the default system prompt"))
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText(self.tr("How the assistant should behave, e.g. “Answer in Chinese.”"))
        own = conversation.system_prompt is not None
        self.use_default_prompt.setChecked(not own)
        self.system_prompt.setPlainText(conversation.system_prompt if own else defaults.system_prompt)
        self.system_prompt.setEnabled(own)
        self.use_default_prompt.toggled.connect(self.system_prompt.setDisabled)
        self.form = GenerationForm()
        self.form.set_values(generation_values(defaults, conversation.settings))
        self.error = QLabel()
        show_problem(self.error, True)
        self.error.setWordWrap(True)
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(self.tr("System prompt")))
        layout.addWidget(self.use_default_prompt)
        layout.addWidget(self.system_prompt)
        layout.addWidget(self.form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def accept(self) -> None:
        problem = check_values(self.form.values())
        if problem:
            self.error.setText(problem)
            self.error.show()
            return
        super().accept()

    def values(self) -> tuple[str | None, dict]:
        prompt = None if self.use_default_prompt.isChecked() else self.system_prompt.toPlainText()
        defaults = generation_values(self.defaults, {})
        overrides = {k: v for k, v in self.form.values().items() if k in GENERATION_FIELDS and v != defaults[k]}
        return prompt, overrides
