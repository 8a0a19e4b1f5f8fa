"""Choosing the model: built-in or LLaMA2/3 files, backend, weight format, threads; files checked before loading.

"Check files" runs the engine's ``check_model_files`` off the UI thread and shows its summary or
its message (the engine's words, never a traceback). The LLaMA downloads are offered next to the
file fields, and fill them in when done. The models folder (``engine.paths``: where downloads go and
the file fields default to) is chosen here too, and kept when the dialog is accepted or a download
starts (the files must be found where they went).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from engine import paths

from .background import Task
from .download_panel import DownloadPanel
from .engine_messages import localized
from .model_catalog import TITLES, kind_meaning, manifest_kinds
from .preferences import ModelChoice
from .theme import show_problem


class PathField(QWidget):
    """A path typed or picked with Browse…: a file, or a folder when ``file_filter`` is None."""

    def __init__(self, caption: str, file_filter: str | None, parent=None):
        super().__init__(parent)
        self.caption, self.file_filter = caption, file_filter
        self.edit = QLineEdit(self)
        browse = QPushButton(self.tr("Browse…"), self)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)

    def _browse(self) -> None:
        start = self.edit.text() or self.edit.placeholderText()
        if self.file_filter is None:
            path = QFileDialog.getExistingDirectory(self, self.caption, start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, self.caption, start, self.file_filter)
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        return self.edit.text().strip()


class ModelSetupForm(QWidget):
    checked = Signal(bool, str)           # files are fine, what the user sees

    def __init__(self, choice: ModelChoice, parent=None, downloads=None):
        """``downloads``: the app's (app/downloads.py), which goes on when the dialog closes; None: the form's
        own (stopped with it)."""
        super().__init__(parent)
        self.source = QComboBox()
        self.source.addItem(self.tr("Built-in: SmolLM2-135M-Instruct (chat; small, no download)"), "builtin")
        self._add_downloadable_sources()
        self.source.setToolTip(self.tr("Chat models answer questions; base models only continue a text"))
        self.checkpoint = PathField(self.tr("Checkpoint"), self.tr("Checkpoints (*.ckpt *.safetensors);;All files (*)"))
        self.tokenizer = PathField(self.tr("Tokenizer"), self.tr("Tokenizer (*.model *.json);;All files (*)"))
        self.config = PathField(self.tr("Config"), self.tr("Config (*.yaml *.yml);;All files (*)"))
        self.models_folder = PathField(self.tr("Models folder"), None)
        self.models_folder.edit.setPlaceholderText(str(paths.default_models_dir()))
        self.models_folder.edit.setToolTip(self.tr("Where downloads go and where LLaMA2/LLaMA3 files are looked "
                                                   "for by default (e.g. a drive with room for 16 GB)"))
        self._saved_folder = paths.models_dir()
        override = os.environ.get(paths.MODELS_ENV)
        chosen = override or paths.chosen_models_dir()
        self.models_folder.edit.setText(str(chosen) if chosen else "")
        if override:
            self.models_folder.setEnabled(False)
            self.models_folder.setToolTip(self.tr("Set by the environment variable {0}").format(paths.MODELS_ENV))
        self.backend = QComboBox()
        self.backend.addItem(self.tr("Automatic"), "auto")
        from engine import backend_names  # light: names only, no backend is imported
        for name in backend_names():
            self.backend.addItem(name, name)
        self.weight_format = QComboBox()
        self.weight_format.addItem(self.tr("As stored in the file"), "auto")
        self.weight_format.addItem(self.tr("8-bit (int8, cpu backend; about half the memory)"), "int8")
        self.weight_format.addItem(self.tr("4-bit (int4, cpu backend; under a third of the memory)"), "int4")
        self.threads = QSpinBox(minimum=0, maximum=max(os.cpu_count() or 1, 1))
        self.threads.setSpecialValueText(self.tr("Automatic (one per core, fewer while other programs are busy)"))
        self.threads.setToolTip(self.tr("Automatic: the cpu backend times its steps and drops a thread while another "
                                        "program keeps a core busy (twice as fast then), taking it back when the "
                                        "core is free. A number fixes the count."))
        self.context_length = QSpinBox(minimum=0, maximum=131072, singleStep=512)
        self.context_length.setSpecialValueText(self.tr("The model's own"))
        self.context_length.setToolTip(self.tr("Tokens the model sees at once: less needs less memory, and older "
                                               "turns are left out sooner"))
        self.template = QComboBox()
        self.template.addItem(self.tr("Automatic (the model's own)"), "auto")
        self.template.addItem(self.tr("LLaMA2 chat"), "llama2")
        self.template.addItem(self.tr("LLaMA3 instruct"), "llama3")
        self.template.addItem(self.tr("ChatML"), "chatml")
        self.template.addItem(self.tr("Base model: plain User/Assistant transcript"), "base")
        self.template.setToolTip(self.tr("A base model (not chat-tuned) continues text: it chats through a plain "
                                         "transcript that stops where the next turn would start"))
        self.check_button = QPushButton(self.tr("Check files"))
        self.check_button.clicked.connect(self.check)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setObjectName("checkResult")
        form = QFormLayout()
        form.addRow(self.tr("Model"), self.source)
        form.addRow(self.tr("Models folder"), self.models_folder)
        form.addRow(self.tr("Checkpoint"), self.checkpoint)
        form.addRow(self.tr("Tokenizer"), self.tokenizer)
        form.addRow(self.tr("Config"), self.config)
        form.addRow(self.tr("Backend"), self.backend)
        form.addRow(self.tr("Weights"), self.weight_format)
        form.addRow(self.tr("Threads"), self.threads)
        form.addRow(self.tr("Context length"), self.context_length)
        form.addRow(self.tr("Chat format"), self.template)
        self.downloads = QGroupBox(self.tr("Download the model"))
        self.download = DownloadPanel(self.downloads, downloads)
        QVBoxLayout(self.downloads).addWidget(self.download)
        self.download.downloaded.connect(self._downloaded)
        self.download.starting.connect(self._download_starting)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.check_button)
        row.addWidget(self.result, 1)
        layout.addLayout(row)
        layout.addWidget(self.downloads)
        layout.addStretch(1)
        self.task: Task | None = None
        self._checking: ModelChoice | None = None
        self.passed: ModelChoice | None = None    # the last choice whose files passed "Check files"
        self._then = None                          # what to do once the running check passes
        self.source.currentIndexChanged.connect(self._source_changed)
        self.models_folder.edit.textChanged.connect(self._source_changed)
        self.set_choice(choice)

    def set_choice(self, choice: ModelChoice) -> None:
        key = choice.source
        if key != "builtin" and Path(choice.checkpoint or ".").name == f"{key}-hf":
            key = f"{key}-hf"             # a Hugging Face set: its folder, named after it
        self.source.setCurrentIndex(max(self.source.findData(key), 0))
        defaults = self._defaults(key)
        self.checkpoint.edit.setText("" if choice.checkpoint == str(defaults.get("checkpoint")) else choice.checkpoint)
        self.tokenizer.edit.setText("" if choice.tokenizer == str(defaults.get("tokenizer")) else choice.tokenizer)
        self.config.edit.setText(choice.config)
        self.backend.setCurrentIndex(max(self.backend.findData(choice.backend), 0))
        self.weight_format.setCurrentIndex(max(self.weight_format.findData(choice.weight_format), 0))
        self.threads.setValue(choice.threads)
        self.context_length.setValue(choice.context_length)
        self.template.setCurrentIndex(max(self.template.findData(choice.template), 0))
        self._source_changed()

    def _add_downloadable_sources(self) -> None:
        """The downloadable models, chat models first, each with its kind as the download manifest states it."""
        kinds = manifest_kinds()
        files = {"llama3-hf": self.tr("Hugging Face files"), "llama2-hf": self.tr("Hugging Face files"),
                 "llama3": self.tr("MindSpore checkpoint"), "llama2": self.tr("MindSpore checkpoint")}
        words = {"chat": self.tr("chat"), "base": self.tr("base model: continues text, not a chat assistant"),
                 "": self.tr("kind not stated")}
        for key in sorted(files, key=lambda k: kinds.get(k) != "chat"):
            kind = kinds.get(key, "")
            self.source.addItem(f"{TITLES[key]} ({words.get(kind, words[''])}; {files[key]})", key)
            self.source.setItemData(self.source.count() - 1, kind_meaning(kind), Qt.ItemDataRole.ToolTipRole)

    def _defaults(self, key: str) -> dict:
        """Where a model's files are when downloaded: a MindSpore set's own names, a Hugging Face set's folder."""
        if key == "builtin":
            return {}
        version = 2 if key.startswith("llama2") else 3
        defaults = paths.default_model_files(version, self.models_folder_path())
        if key.endswith("-hf"):
            folder = self.models_folder_path() / key
            defaults = dict(defaults, checkpoint=folder, tokenizer=folder / "tokenizer.model")
        return defaults

    def choice(self) -> ModelChoice:
        key = self.source.currentData()
        defaults = self._defaults(key)
        hf = key.endswith("-hf")          # its files must be named: the engine's defaults are the .ckpt's
        return ModelChoice(source=key.removesuffix("-hf"),
                           checkpoint=self.checkpoint.text() or (str(defaults["checkpoint"]) if hf else ""),
                           tokenizer=self.tokenizer.text() or (str(defaults["tokenizer"]) if hf else ""),
                           config=self.config.text(), backend=self.backend.currentData(),
                           weight_format=self.weight_format.currentData(), threads=self.threads.value(),
                           context_length=self.context_length.value(),
                           template=self.template.currentData())

    def _source_changed(self) -> None:
        key = self.source.currentData()
        llama = key != "builtin"
        for field in (self.checkpoint, self.tokenizer, self.config):
            field.setEnabled(llama)
        self.downloads.setVisible(llama)
        if llama:
            defaults = self._defaults(key)
            self.checkpoint.edit.setPlaceholderText(str(defaults["checkpoint"]))
            self.tokenizer.edit.setPlaceholderText(str(defaults["tokenizer"]))
            self.config.edit.setPlaceholderText(str(defaults["config"]))
            self.download.set_model(key, self.models_folder_path())
        self.result.clear()

    def models_folder_path(self) -> Path:
        """The models folder as this form has it (its field, else the default), saved or not."""
        return Path(self.models_folder.text()) if self.models_folder.text() else paths.default_models_dir()

    @property
    def models_folder_changed(self) -> bool:
        return self.models_folder_path() != self._saved_folder

    def save_models_folder(self) -> str | None:
        """Keep the chosen models folder (``engine.paths``); None when done, else why it could not be."""
        if os.environ.get(paths.MODELS_ENV) or not self.models_folder_changed:
            return None
        try:
            paths.choose_models_dir(self.models_folder.text() or None)
        except OSError as exc:
            return self.tr("The models folder {0} cannot be used: {1}").format(self.models_folder.text(),
                                                                             exc.strerror or exc)
        self._saved_folder = paths.models_dir()
        return None

    def _download_starting(self, _model: str = "") -> None:
        problem = self.save_models_folder()
        if problem:
            show_problem(self.result, True)
            self.result.setText(problem)

    def check(self) -> None:
        """Validate the chosen files against each other (no weights are read); shows the outcome."""
        choice = self.choice()
        if choice.source == "builtin":
            self.passed = choice
            self._show(True, self.tr("The built-in model needs no files."))
            return
        if self.task is not None and self.task.running:
            return
        self._checking = choice

        def job(_report):
            from engine import check_model_files
            return check_model_files(choice.model_source())
        self.check_button.setEnabled(False)
        self.result.setText(self.tr("Checking…"))
        self.task = Task(job, then=self._summary, otherwise=self._problem).start()

    def check_then(self, then) -> bool:
        """True when the current choice has passed the check; else run it, and call ``then()`` if it passes."""
        if self.passed == self.choice():
            return True
        self._then = then
        self.check()
        return False

    def stop_work(self) -> None:
        """The dialog is closing: stop the form's own download (it resumes next time; the app's goes on) and
        forget a running check."""
        self.download.stop_work()
        if self.task is not None:
            self.task.detach()

    def _summary(self, s: dict) -> None:
        self.passed = self._checking
        self._show(True, self.tr("OK: {0} layers, hidden size {1}, vocabulary {2}, context {3}, {4:.1f} GB of "
                                 "{5} weights.").format(s["layers"], s["hidden_size"], s["vocab_size"],
                                                        s["context_length"], s["weight_bytes"] / 1e9,
                                                        "/".join(s["stored_dtypes"])))

    def _problem(self, exc) -> None:
        self.passed = None
        text = localized(exc) if hasattr(exc, "subject") else self.tr("The files could not be checked: {0}").format(exc)
        missing = getattr(exc, "path", None) is not None and not exc.path.exists()
        if missing and getattr(exc, "subject", None) in ("checkpoint", "tokenizer") and self.downloads.isVisible():
            text += "\n" + self.tr("Press Download below to get the files.")
        self._show(False, text)

    def _show(self, ok: bool, text: str) -> None:
        self.check_button.setEnabled(True)
        self.result.setProperty("ok", ok)
        show_problem(self.result, not ok)
        self.result.setText(text)
        self.checked.emit(ok, text)
        then, self._then = self._then, None
        if ok and then is not None:
            then()

    def _downloaded(self, name: str) -> None:
        if self.source.currentData() == name:
            self.check()
