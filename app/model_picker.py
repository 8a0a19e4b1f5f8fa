"""The model picker in the window's header: the models on this PC, one click to switch, and "Manage models…"."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox

from .preferences import ModelChoice

MANAGE = "manage"


def same_model(a: ModelChoice | None, b: ModelChoice | None) -> bool:
    """The same files (how they run - threads, context - does not make another model)."""
    from .models_page import checkpoint_of
    return a is not None and b is not None and a.source == b.source and checkpoint_of(a) == checkpoint_of(b)


class ModelPicker(QComboBox):
    chosen = Signal(object)               # a ModelChoice
    manageRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("modelPicker")
        self.setToolTip(self.tr("The model answering: switch to another one on this PC"))
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.choices: list[ModelChoice] = []
        self.addItem(self.tr("Manage models…"), MANAGE)
        self.activated.connect(self._activated)

    def refresh(self, prefs, loaded: ModelChoice | None) -> None:
        """List the complete models (the catalog reads the disk: call it after the first paint)."""
        from .model_catalog import catalog, choice_to_run, kind_meaning, kind_name, total_ram_bytes
        current = loaded or prefs.model
        ram = total_ram_bytes()
        entries = [e for e in catalog(prefs.added_models) if e.complete]
        self.blockSignals(True)
        self.clear()
        self.choices = []
        for e in entries:                 # a base model is marked (it is no chat assistant); each item's tip says
            self.addItem(f"{e.title} · {kind_name(e.kind)}" if e.kind == "base" else e.title, len(self.choices))
            self.setItemData(self.count() - 1, kind_meaning(e.kind), Qt.ItemDataRole.ToolTipRole)
            self.choices.append(choice_to_run(e, prefs.model, ram))
        self.insertSeparator(self.count())
        self.addItem(self.tr("Manage models…"), MANAGE)
        index = next((i for i, c in enumerate(self.choices) if same_model(c, current)), None)
        if index is None and current is not None:       # loaded from files the catalog does not list
            self.insertItem(0, self.tr("Other files"), -1)
            index = 0
        self.setCurrentIndex(index or 0)
        self.blockSignals(False)

    def _activated(self, index: int) -> None:
        data = self.itemData(index)
        if data == MANAGE:
            self.manageRequested.emit()
        elif isinstance(data, int) and data >= 0:
            choice = self.choices[data]
            self.chosen.emit(choice)
