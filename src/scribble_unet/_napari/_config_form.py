"""A Qt form for fields of a configuration model (``TrainConfig``, ``ModelConfig``).

The widgets use the very configuration the CLI uses (:mod:`scribble_unet.config`): each editor takes
its type and default from the field, its tooltip from the field's description and its range from the
field's bounds; :meth:`ConfigForm.value` builds the model (which validates itself).
"""

from __future__ import annotations

import types
import typing
from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

from ..config import Options, field_bounds, field_label


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if (typing.get_origin(tp) in (typing.Union, types.UnionType)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


class ConfigForm(QWidget):
    """Editable fields ``names`` of configuration model ``cls``, starting from ``defaults``.

    Optional numbers (``int | None``) show 0 as "none"/"auto" and map it back to None.
    """

    def __init__(self, cls: type[Options], names: list[str], defaults: Any = None, parent: QWidget | None = None,
                 none_text: dict[str, str] | None = None) -> None:
        super().__init__(parent)
        self.cls = cls
        self.defaults: Options = defaults if defaults is not None else cls()
        hints = {name: f.annotation for name, f in cls.model_fields.items()}
        self.editors: dict[str, tuple[QWidget, bool]] = {}
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for name in names:
            tp, optional = _unwrap_optional(hints[name])
            value = getattr(self.defaults, name)
            editor: QWidget
            if tp is bool:
                editor = QCheckBox()
                editor.setChecked(bool(value))
            elif typing.get_origin(tp) is typing.Literal:
                editor = QComboBox()
                editor.addItems([str(a) for a in typing.get_args(tp)])
                editor.setCurrentText(str(value))
            elif tp is int:
                editor = QSpinBox()
                lo, hi = _range(cls, name, optional, -(2**31), 2**31 - 1, whole=True)
                editor.setRange(int(lo), int(hi))
                editor.setValue(int(value) if value is not None else 0)
            elif tp is float:
                editor = QDoubleSpinBox()
                editor.setDecimals(5)
                editor.setRange(*_range(cls, name, optional, -1e9, 1e9))
                editor.setValue(float(value) if value is not None else 0.0)
                if 0 < abs(float(value or 0)) < 0.1:
                    editor.setSingleStep(abs(float(value)) / 2)
            else:
                continue  # tuples and other structures keep their defaults
            if optional and isinstance(editor, (QSpinBox, QDoubleSpinBox)):
                editor.setSpecialValueText((none_text or {}).get(name, "none"))
            editor.setToolTip(cls.model_fields[name].description or "")
            layout.addRow(field_label(cls, name), editor)
            self.editors[name] = (editor, optional)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (editor, optional) in self.editors.items():
            if isinstance(editor, QCheckBox):
                v: Any = editor.isChecked()
            elif isinstance(editor, QComboBox):
                v = editor.currentText()
            elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
                v = editor.value()
                if optional and v == 0:
                    v = None
            out[name] = v
        return out

    def set_value(self, name: str, value: Any) -> None:
        editor, _ = self.editors[name]
        if isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QComboBox):
            editor.setCurrentText(str(value))
        else:
            editor.setValue(0 if value is None else value)  # type: ignore[attr-defined]

    def value(self, **overrides: Any) -> Any:
        """The configuration built from the form (validated by the model itself)."""
        return self.defaults.replace(**{**self.values(), **overrides})


def _range(cls: Any, name: str, optional: bool, lo: float, hi: float,
           whole: bool = False) -> tuple[float, float]:
    """Spin-box range from the field's bounds; an optional field keeps 0 free to mean "none"."""
    b = field_bounds(cls, name)
    if "gt" in b and whole:
        b.setdefault("ge", b["gt"] + 1)
    lo = b.get("ge", b.get("gt", lo))
    hi = b.get("le", b.get("lt", hi))
    if optional:
        lo = 0
    return lo, hi
