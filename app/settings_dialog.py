"""Settings: General (language, theme, default system prompt, local API server), Model, Answers."""

from __future__ import annotations

import copy
import importlib.util

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel,
                               QPlainTextEdit, QSpinBox, QTabWidget, QVBoxLayout, QWidget)

from .conversation_settings import GenerationForm, check_values
from .disk_use_row import DiskUseRow
from .model_setup import ModelSetupForm
from .preferences import GENERATION_FIELDS, Preferences, generation_values
from .theme import show_problem


def api_server_available() -> bool:
    return importlib.util.find_spec("api_server") is not None


class SettingsDialog(QDialog):
    def __init__(self, prefs: Preferences, parent=None, page: str = "general", api_address: str = "",
                 downloads=None, states_shown=None):
        """``states_shown(bytes)``: also told what the saved states take (the window's status bar), at once
        after Clear, even when this dialog has closed before the files were gone."""
        super().__init__(parent)
        self.states_shown = states_shown
        self.prefs = copy.deepcopy(prefs)
        self.setWindowTitle(self.tr("Settings"))
        self.resize(720, 560)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self._general(api_address), self.tr("General"))
        self.model = ModelSetupForm(self.prefs.model, downloads=downloads)  # the app's download goes on
        self.tabs.addTab(self.model, self.tr("Model"))
        self.tabs.addTab(self._answers(), self.tr("Answers"))
        self.tabs.setCurrentIndex({"general": 0, "model": 1, "answers": 2}.get(page, 0))
        self.error = QLabel()
        self.error.setWordWrap(True)
        show_problem(self.error, True)
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def _general(self, api_address: str) -> QWidget:
        page = QWidget()
        self.language = QComboBox()
        self.language.addItem(self.tr("System language"), "")
        self.language.addItem("English", "en")
        self.language.addItem("简体中文", "zh_CN")
        self.language.setCurrentIndex(max(self.language.findData(self.prefs.language), 0))
        self.theme = QComboBox()
        self.theme.addItem(self.tr("Follow the system"), "system")
        self.theme.addItem(self.tr("Light"), "light")
        self.theme.addItem(self.tr("Dark"), "dark")
        self.theme.setCurrentIndex(max(self.theme.findData(self.prefs.theme), 0))
        self.system_prompt = QPlainTextEdit(self.prefs.chat.system_prompt)
        self.system_prompt.setPlaceholderText(self.tr("Empty: the model's own default"))
        self.api = QCheckBox(self.tr("Local API server (OpenAI-style, this computer only)"))
        self.api.setChecked(self.prefs.api_server)
        self.port = QSpinBox(minimum=1024, maximum=65535, value=self.prefs.api_port)
        self.api_streams = QSpinBox(minimum=1, maximum=4, value=self.prefs.api_streams)
        self.api_streams.setToolTip(self.tr("Answers computed at once while the server is on (this app's chat among "
                                            "them): together they cost little more time than one, but each needs "
                                            "memory for a whole conversation. Applies when a model is loaded next."))
        self.api_address = QLabel()
        api_row = QHBoxLayout()
        api_row.addWidget(self.api)
        api_row.addWidget(QLabel(self.tr("Port")))
        api_row.addWidget(self.port)
        api_row.addWidget(QLabel(self.tr("Answers at once")))
        api_row.addWidget(self.api_streams)
        api_row.addStretch(1)
        if not api_server_available():
            for widget in (self.api, self.port, self.api_streams):
                widget.setEnabled(False)
                widget.setToolTip(self.tr("The local API server is not part of this version yet."))
            self.api.setChecked(False)
            self.api_address.setText(self.tr("Not available in this version."))
        else:
            self.api_address.setText(api_address or self.tr("Will listen on http://127.0.0.1:{0}").format(
                self.port.value()))
            self.port.valueChanged.connect(self._show_api_address)
        form = QFormLayout(page)
        form.addRow(self.tr("Language"), self.language)
        form.addRow(self.tr("Theme"), self.theme)
        form.addRow(self.tr("Default system prompt"), self.system_prompt)
        form.addRow(self.tr("API"), api_row)
        form.addRow("", self.api_address)
        self.disk_rows = [self._saved_states_row(), self._quantized_weights_row()]
        form.addRow(self.tr("Saved conversations"), self.disk_rows[0])
        form.addRow(self.tr("Quantized weights"), self.disk_rows[1])
        return page

    def _show_api_address(self, port: int) -> None:
        self.api_address.setText(self.tr("Will listen on http://127.0.0.1:{0}").format(port))

    def _saved_states_row(self) -> DiskUseRow:
        """The size limit of the conversation states kept on disk, what they take now, and Clear."""
        from engine.generation.prompt_states import remove_states, states_size
        from engine.paths import prompt_states_dir
        row = DiskUseRow(lambda: states_size(prompt_states_dir()), lambda: remove_states(prompt_states_dir()),
                         self.tr("A reopened conversation continues at once instead of reading the whole chat "
                                 "again; the least recently used are deleted beyond this size"),
                         limit_gb=self.prefs.saved_states_gb, shown=self.states_shown)
        self.states_limit, self.states_used, self.states_clear = row.limit, row.used, row.clear
        return row

    def _quantized_weights_row(self) -> DiskUseRow:
        """What the 8-/4-bit weights kept from earlier loads take, and Clear (the engine keeps them in a limit)."""
        from engine.backends.cpu.weight_cache import cache_size, remove_all
        from engine.paths import quantized_weights_dir
        row = DiskUseRow(lambda: cache_size(quantized_weights_dir()), lambda: remove_all(quantized_weights_dir()),
                         self.tr("8-bit and 4-bit weights made when a model was loaded, kept so that its next "
                                 "load takes seconds instead of minutes; the least recently loaded are deleted "
                                 "beyond this size"), limit_gb=self.prefs.quantized_weights_gb)
        self.weights_limit, self.weights_used, self.weights_clear = row.limit, row.used, row.clear
        return row

    def _answers(self) -> QWidget:
        page = QWidget()
        self.generation = GenerationForm()
        self.generation.set_values(generation_values(self.prefs.chat, {}))
        layout = QVBoxLayout(page)
        layout.addWidget(QLabel(self.tr("New conversations start with these settings; each conversation can "
                                        "change them (Conversation settings).")))
        layout.addWidget(self.generation)
        layout.addStretch(1)
        return page

    def accept(self) -> None:
        problem = check_values(self.generation.values())
        if problem:
            self.tabs.setCurrentIndex(2)
            self.error.setText(problem)
            self.error.show()
            return
        problem = self.model.save_models_folder()
        if problem:
            self.tabs.setCurrentIndex(1)
            self.error.setText(problem)
            self.error.show()
            return
        super().accept()

    def done(self, result: int) -> None:
        self.model.stop_work()
        for row in self.disk_rows:        # a running job still tells ``states_shown``, not these widgets
            row.closing()
        super().done(result)

    def result_prefs(self) -> Preferences:
        prefs = self.prefs
        prefs.language = self.language.currentData()
        prefs.theme = self.theme.currentData()
        prefs.chat.system_prompt = self.system_prompt.toPlainText()
        for name, value in self.generation.values().items():
            if name in GENERATION_FIELDS:
                setattr(prefs.chat, name, value)
        prefs.api_server = self.api.isChecked()
        prefs.api_port = self.port.value()
        prefs.api_streams = self.api_streams.value()
        prefs.saved_states_gb = self.states_limit.value()
        prefs.quantized_weights_gb = self.weights_limit.value()
        prefs.model = self.model.choice()
        return prefs
