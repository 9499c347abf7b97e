"""The chat window's model picker: the models on this machine in a combo box, the serving one selected.

Choosing another switches the daemon to it exactly as `trayllm use` does (trayllm.model_switch: the daemon checks
it, switches, and the choice is saved in the config file), on a worker thread, with the switch's progress and its
outcome beside the box; a refused or failed switch leaves the old model selected, as it keeps serving. The list
(trayllm.model_catalog: it reads file headers and asks NVML) is made on a worker thread too, whenever the serving
model changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from trayllm import api_status
from trayllm.config import Settings
from trayllm.doctor.gpus import probe
from trayllm.errors import TrayllmError
from trayllm.model_catalog import CatalogEntry, build_catalog
from trayllm.model_switch import switch_model


class ModelPicker(QWidget):
    switched = Signal(str)  # a switch ended: "" when the new model serves, else why not (tests wait on it)
    listed = Signal()  # the list was (re)filled
    _entries_ready = Signal(object)  # list[CatalogEntry], from the listing thread
    _progress = Signal(str)
    _ended = Signal(str)

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.entries: list[CatalogEntry] = []
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(30)
        self.note = QLabel("")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Model"))
        row.addWidget(self.combo, 1)
        row.addWidget(self.note, 1)
        self.combo.activated.connect(self._chosen)  # the user's choices only, not the list being filled
        self._entries_ready.connect(self._fill)
        self._progress.connect(self.note.setText)
        self._ended.connect(self._on_ended)
        self._serving: str | None = None  # the serving model's source the list was made for
        self._listed_once = False
        self._busy = False

    def serving(self, model: api_status.ModelStatus | None) -> None:
        """The daemon's model, from a status poll: list the models again when it changed (or was never listed)."""
        source = model.source if model is not None else None
        if self._busy or (self._listed_once and source == self._serving):
            return
        self._serving, self._listed_once = source, True
        self._in_background(lambda: self._entries_ready.emit(build_catalog(self.settings, probe(), model).models))

    def choose(self, entry_id: str) -> None:
        """Switch to the model with this id, as picking it in the box does."""
        index = next(i for i, entry in enumerate(self.entries) if entry.id == entry_id)
        self.combo.setCurrentIndex(index)
        self._chosen(index)

    @Slot(object)
    def _fill(self, entries: list[CatalogEntry]) -> None:
        self.entries = entries
        self.combo.clear()
        for entry in entries:
            self.combo.addItem(entry.label)
            if entry.problem is not None:  # listed, so the user sees it, but not choosable
                self.combo.model().item(self.combo.count() - 1).setEnabled(False)  # type: ignore[attr-defined]
        self._select_serving()
        self.listed.emit()

    def _select_serving(self) -> None:
        serving = next((i for i, entry in enumerate(self.entries) if entry.serving), -1)
        self.combo.setCurrentIndex(serving)

    @Slot(int)
    def _chosen(self, index: int) -> None:
        entry = self.entries[index]
        if entry.serving or self._busy:
            return
        self._busy = True
        self.combo.setEnabled(False)
        self.note.setText(f"switching to {entry.id}…")

        def switch() -> None:
            try:
                switch_model(self.settings, entry.model, on_progress=self._progress.emit)
            except TrayllmError as exc:
                self._ended.emit(exc.message)
                return
            self._ended.emit("")

        self._in_background(switch)

    @Slot(str)
    def _on_ended(self, error: str) -> None:
        self._busy = False
        self.combo.setEnabled(True)
        if error:
            self.note.setText(f"not switched: {error}")
            self._select_serving()
        else:
            self.note.setText("switched")
            self._listed_once = False  # list again at the next status, marking the new model
        self.switched.emit(error)

    def _in_background(self, work: Callable[[], None]) -> None:
        threading.Thread(target=work, name="trayllm-chat-models", daemon=True).start()
