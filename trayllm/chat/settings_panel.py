"""The chat window's settings panel: the model line and one conversation's system prompt and sampling settings.

Each spin box's minimum reads "default" and stands for ``None``, which the store keeps as "use the daemon's
default"; the two conversions between a setting and a spin box value are plain functions, tested without Qt.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QSpinBox, QWidget

from trayllm.chat.records import Conversation


def spin_value(setting: float | None, minimum: float) -> float:
    """What a spin box shows for a setting: its minimum ("default") for ``None``."""
    return minimum if setting is None else setting


def chosen_setting(value: float, minimum: float) -> float | None:
    """The setting a spin box value stands for: ``None`` (the daemon's default) at its minimum."""
    return None if value == minimum else value


class SettingsPanel(QWidget):
    """Shows one conversation's settings and emits ``changed`` when the user edits one (not when shown)."""

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.model_label = QLabel("model: ?")
        self.system_prompt = QLineEdit(placeholderText="System prompt (optional)")
        self.temperature, self.top_p, self.max_tokens = QDoubleSpinBox(), QDoubleSpinBox(), QSpinBox()
        self.temperature.setRange(-0.1, 2.0)
        self.temperature.setSingleStep(0.1)
        self.top_p.setRange(0.0, 1.0)
        self.top_p.setSingleStep(0.05)
        self.max_tokens.setRange(0, 32768)
        self.system_prompt.editingFinished.connect(self.changed)
        for spin in self._spins():
            spin.setSpecialValueText("default")
            spin.valueChanged.connect(self._on_value_changed)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)  # laid out as the form alone was, before it was a widget
        form.addRow(self.model_label)
        form.addRow("System", self.system_prompt)
        row = QHBoxLayout()
        for label, widget in (
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("max tokens", self.max_tokens),
        ):
            row.addWidget(QLabel(label))
            row.addWidget(widget)
        form.addRow(row)

    def _spins(self) -> tuple[QDoubleSpinBox | QSpinBox, ...]:
        return self.temperature, self.top_p, self.max_tokens

    def _on_value_changed(self, _value: float) -> None:
        self.changed.emit()

    def show_conversation(self, conversation: Conversation) -> None:
        """Show ``conversation``'s settings without emitting ``changed``: showing them is not editing them."""
        settings = (conversation.temperature, conversation.top_p, conversation.max_tokens)
        for spin, setting in zip(self._spins(), settings, strict=True):
            spin.blockSignals(True)
            spin.setValue(spin_value(setting, spin.minimum()))  # type: ignore[arg-type]  # an int spin box holds an int
            spin.blockSignals(False)
        self.system_prompt.setText(conversation.system_prompt or "")

    def chosen(self) -> dict[str, Any]:
        """The settings as shown, as ``ConversationStore.update_settings`` takes them (``None``: the default)."""
        temperature, top_p, max_tokens = (chosen_setting(spin.value(), spin.minimum()) for spin in self._spins())
        return {
            "system_prompt": self.system_prompt.text().strip() or None,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
        }
