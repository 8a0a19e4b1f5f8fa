"""The Models page: every model with its kind, format, size on disk, the memory it needs against this PC's,
and where it lives; download (memory and disk checked first), add, remove, use; the models folder.

A download is refused before its first byte when the disk lacks room, and asks first when the model
will not fit in this PC's memory even with 4-bit weights (a user should not fetch 16 GB to learn
that). When it fits only in 8 or only in 4 bits, "Use" loads it that way.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QMessageBox, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout)

from engine import paths

from .download_panel import DownloadPanel, human_bytes
from .model_catalog import (CatalogEntry, catalog, choice_to_run, download_check, free_disk_bytes, kind_meaning,
                            kind_name, total_ram_bytes)
from .model_setup import ModelSetupForm, PathField
from .preferences import ModelChoice
from .theme import show_problem


def memory_text(entry: CatalogEntry, ram: int | None, streams: int = 1) -> str:
    """'15.8 GB as stored · 9.6 GB in 8 bits · 6.4 GB in 4 bits', and what that means on this PC; ``streams``:
    answers computed at once (Settings > API), a KV cache each."""
    if entry.plan is None:
        return ""
    plan = entry.plan
    text = QCoreApplication.translate("ModelsDialog", "{0} as stored · {1} in 8 bits · {2} in 4 bits").format(
        human_bytes(plan.total("auto", streams)), human_bytes(plan.total("int8", streams)),
        human_bytes(plan.total("int4", streams)))
    if ram and plan.total("auto", streams) > ram:
        text += " · " + {"int8": QCoreApplication.translate("ModelsDialog", "use 8 bits here"),
                         "int4": QCoreApplication.translate("ModelsDialog", "use 4 bits here"),
                         None: QCoreApplication.translate("ModelsDialog", "too large for this PC")}[
            plan.smallest_fitting(ram, streams=streams)]
    return text


def checkpoint_of(choice: ModelChoice) -> Path | None:
    """The file or folder a choice loads (its default location when none is given)."""
    if choice.source == "builtin":
        return None
    return Path(choice.checkpoint or paths.default_model_files(choice.version)["checkpoint"]).resolve()


class ModelsDialog(QDialog):
    useRequested = Signal(object)         # the ModelChoice to load

    def __init__(self, prefs, loaded: ModelChoice | None, parent=None, manifest: Path | None = None,
                 downloads=None):
        """``downloads``: the app's (app/downloads.py), which goes on when this dialog closes; None: one of its own
        (stopped on close)."""
        super().__init__(parent)
        self.prefs, self.loaded, self.manifest = prefs, loaded, manifest
        self.entries: list[CatalogEntry] = []
        self.ram = total_ram_bytes()
        self.setWindowTitle(self.tr("Models"))
        self.resize(1280, 560)             # room for the folder column beside the memory figures
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.folder = PathField(self.tr("Models folder"), None, self)
        self.folder.edit.setPlaceholderText(str(paths.default_models_dir()))
        self.folder.edit.setText(os.environ.get(paths.MODELS_ENV) or str(paths.chosen_models_dir() or ""))
        self.folder.setEnabled(not os.environ.get(paths.MODELS_ENV))
        self.folder_button = QPushButton(self.tr("Use this folder"))
        self.folder_button.clicked.connect(self.save_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(QLabel(self.tr("Models folder")))
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(self.folder_button)
        columns = [self.tr("Model"), self.tr("Kind"), self.tr("Stored as"), self.tr("On disk"),
                   self.tr("Memory needed"), self.tr("Where")]
        self.table = QTableWidget(0, len(columns), self)
        self.table.setHorizontalHeaderLabels(columns)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(columns) - 1, QHeaderView.ResizeMode.Stretch)   # the folder: elided
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.itemSelectionChanged.connect(self._selected)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setObjectName("checkResult")
        self.use_button = QPushButton(self.tr("Use"))
        self.download_button = QPushButton(self.tr("Download"))
        self.remove_button = QPushButton(self.tr("Remove…"))
        self.add_button = QPushButton(self.tr("Add…"))
        self.open_button = QPushButton(self.tr("Open folder"))
        for button, slot in ((self.use_button, self.use), (self.download_button, self.download),
                             (self.remove_button, self.remove), (self.add_button, self.add),
                             (self.open_button, self.open_folder)):
            button.clicked.connect(slot)
        actions = QHBoxLayout()
        for button in (self.use_button, self.download_button, self.remove_button, self.open_button):
            actions.addWidget(button)
        actions.addStretch(1)
        actions.addWidget(self.add_button)
        self.downloads = DownloadPanel(self, downloads)
        self.downloads.manifest = manifest
        self.downloads.downloaded.connect(self._downloaded)
        self.downloads.downloads.failed.connect(self._selected)
        self.downloads.setVisible(self.downloads.running)     # started before this dialog was opened
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addLayout(folder_row)
        layout.addWidget(self.table, 1)
        layout.addLayout(actions)
        layout.addWidget(self.message)
        layout.addWidget(self.downloads)
        layout.addWidget(close)
        self.refresh()

    # -- contents -----------------------------------------------------------------------------------

    def models_folder(self) -> Path:
        return Path(self.folder.text()) if self.folder.text() else paths.default_models_dir()

    def refresh(self) -> None:
        selected = self.current().key if self.current() else None
        self.entries = catalog(self.prefs.added_models, self.models_folder(), self.manifest)
        free = free_disk_bytes(self.models_folder())
        from engine import available_bytes
        self.summary.setText(self.tr("This PC: {0} of memory ({1} free now). The models folder has {2} free.")
                             .format(human_bytes(self.ram), human_bytes(available_bytes()), human_bytes(free)))
        self.table.setRowCount(len(self.entries))
        for row, e in enumerate(self.entries):
            kind = kind_name(e.kind)
            on_disk = human_bytes(e.on_disk) if e.complete or not e.downloadable else self.tr(
                "{0} of {1}").format(human_bytes(e.on_disk), human_bytes(e.download_bytes))
            cells = (e.title, kind, e.weight_format, on_disk, memory_text(e, self.ram, self.streams), str(e.folder))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                tips = {0: e.description, 1: kind_meaning(e.kind), 4: self._memory_tip(e)}
                item.setToolTip(tips.get(column) or text)
                self.table.setItem(row, column, item)
        keys = [e.key for e in self.entries]
        self.table.selectRow(keys.index(selected) if selected in keys else 0)
        self._selected()

    @property
    def streams(self) -> int:
        """Answers a model loaded now computes at once: a KV cache each (Settings > API)."""
        return self.prefs.api_streams if self.prefs.api_server else 1

    def _memory_tip(self, e: CatalogEntry) -> str:
        if e.plan is None:
            return ""
        if self.streams > 1:
            return self.tr("Weights {0} as stored, {1} in 8 bits or {2} in 4 bits (the cpu backend), plus {3} for "
                           "{5} conversations of {4} tokens at once (Settings > General > API; a shorter context in "
                           "Settings > Model needs less), plus about 0.4 GB for the program.").format(
                human_bytes(e.plan.stored), human_bytes(e.plan.int8), human_bytes(e.plan.int4),
                human_bytes(e.plan.kv_cache * self.streams), e.plan.context, self.streams)
        return self.tr("Weights {0} as stored, {1} in 8 bits or {2} in 4 bits (the cpu backend), plus {3} for a "
                       "conversation of {4} tokens (a shorter context in Settings > Model needs less), plus about "
                       "0.4 GB for the program.").format(
            human_bytes(e.plan.stored), human_bytes(e.plan.int8), human_bytes(e.plan.int4),
            human_bytes(e.plan.kv_cache), e.plan.context)

    def current(self) -> CatalogEntry | None:
        row = self.table.currentRow()
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def _selected(self) -> None:
        e = self.current()
        busy = self.downloads.running
        self.use_button.setEnabled(bool(e and e.complete))
        self.download_button.setEnabled(bool(e and e.downloadable and not e.complete) and not busy)
        self.remove_button.setEnabled(bool(e and e.key != "builtin" and (e.on_disk or e.key.startswith("added:")))
                                      and not busy)
        self.open_button.setEnabled(bool(e and e.folder.is_dir()))
        self.message.clear()

    def _say(self, text: str, problem: bool = False) -> None:
        show_problem(self.message, problem)
        self.message.setText(text)

    # -- actions ------------------------------------------------------------------------------------

    def save_folder(self) -> None:
        try:
            paths.choose_models_dir(self.folder.text() or None)
        except OSError as exc:
            self._say(self.tr("The models folder {0} cannot be used: {1}").format(self.folder.text(),
                                                                                exc.strerror or exc), True)
            return
        self.refresh()

    def use(self) -> None:
        e = self.current()
        if e is None or not e.complete:
            return
        self.useRequested.emit(choice_to_run(e, self.prefs.model, self.ram, self.streams))
        self.accept()

    def download(self) -> None:
        """Start a download once the disk has room and the model can run here (or the user says go on)."""
        e = self.current()
        if e is None or not e.downloadable or self.downloads.running:
            return
        verdict, text = download_check(e, free_disk_bytes(e.folder), self.ram, self.streams)
        if verdict == "refuse":
            self._say(text, True)
            return
        if verdict == "ask" and QMessageBox.question(
                self, self.tr("Download a model that will not fit?"), text,
                defaultButton=QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:
            return
        self._say(text if verdict == "note" else "")
        self.downloads.show()
        self.downloads.set_model(e.key, self.models_folder())
        self.downloads.start()
        self._selected()

    def _downloaded(self, _name: str) -> None:
        self.refresh()

    def remove(self) -> None:
        """Delete a model's files (after saying how much), or forget a model the user added."""
        e = self.current()
        if e is None or e.key == "builtin":
            return
        if self.loaded is not None and checkpoint_of(self.loaded) == checkpoint_of(e.choice):
            self._say(self.tr("{0} is the model in use: choose another one first.").format(e.title), True)
            return
        if e.key.startswith("added:"):
            question = self.tr("Remove {0} from this list? Its files stay where they are ({1}).").format(
                e.title, e.folder)
        else:
            question = self.tr("Delete {0} ({1}) from {2}? Downloading it again takes a long time.").format(
                e.title, human_bytes(e.on_disk), e.folder)
        if QMessageBox.question(self, self.tr("Remove model"), question,
                                defaultButton=QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:
            return
        if e.key.startswith("added:"):
            del self.prefs.added_models[int(e.key.split(":")[1])]
        else:
            delete_model_files(e)
        self.refresh()

    def add(self) -> None:
        dialog = AddModelDialog(self)
        try:
            added = dialog.added() if dialog.exec() else None
        finally:
            dialog.deleteLater()
        if added is not None:
            self.prefs.added_models.append(added)
            self.refresh()
            self.table.selectRow(len(self.entries) - 1)

    def open_folder(self) -> None:
        e = self.current()
        if e is not None and e.folder.is_dir():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(e.folder)))

    def done(self, result: int) -> None:
        self.downloads.downloads.failed.disconnect(self._selected)
        self.downloads.stop_work()         # the app's download goes on; a download of this dialog's own stops
        super().done(result)


def delete_model_files(e: CatalogEntry) -> None:
    """Only the files the manifest names (and their .part/.bad): never anything else in the folder."""
    for status in e.files:
        for path in (status.path, status.path.with_name(status.path.name + ".part"),
                     status.path.with_name(status.path.name + ".bad")):
            path.unlink(missing_ok=True)
    try:
        e.folder.rmdir()                  # only when nothing else is left in it
    except OSError:
        pass


class AddModelDialog(QDialog):
    """Add a model by its files: they must pass the engine's check first."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle(self.tr("Add a model"))
        self.name = QLineEdit()
        self.name.setPlaceholderText(self.tr("A name for the list (e.g. my fine-tuned LLaMA3)"))
        self.form = ModelSetupForm(ModelChoice(source="llama3"), self)
        self.form.downloads.hide()
        self.form.source.removeItem(self.form.source.findData("builtin"))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.name)
        layout.addWidget(self.form, 1)
        layout.addWidget(buttons)

    def accept(self) -> None:
        if self.form.check_then(self.accept):     # the files must pass the engine's check first
            super().accept()

    def added(self) -> dict:
        choice = self.form.choice()
        return {"name": self.name.text().strip() or Path(choice.checkpoint).name, "choice": asdict(choice)}

    def done(self, result: int) -> None:
        self.form.stop_work()
        super().done(result)
