"""What sets a table's extra rows apart from its own: another feature set, the gender as an input, a tuning budget."""

from __future__ import annotations

from dataclasses import dataclass

from ser_models.extractors import FEATURES

DISPLAY_NAMES = {"egemaps": "eGeMAPS", "compare": "ComParE"}  # feature sets' names in tables; others as registered


@dataclass(frozen=True)
class Variant:
    """A table's rows beside its own (a suite's [[variants]] and [tuning]); empty for the table's own rows."""

    feature_set: str | None = None
    gender_input: bool = False
    tuned: tuple = ()  # the tuning budget as sorted (name, value) pairs: {trials, timeout}

    def __post_init__(self) -> None:
        if self.feature_set is not None and self.feature_set not in FEATURES:
            raise ValueError(f"unknown feature_set {self.feature_set!r}; choose from {FEATURES.names()}")

    def __bool__(self) -> bool:
        return bool(self.fields())

    @classmethod
    def of(cls, fields: dict | None) -> Variant:
        """From its record form (`fields()`)."""
        fields = fields or {}
        return cls(fields.get("feature_set"), bool(fields.get("gender_input")),
                   tuple(sorted((fields.get("tuned") or {}).items())))

    def fields(self) -> dict:
        """What records store and config hashes cover: only the fields that are set (rows recorded before a field
        existed keep their hashes)."""
        return {**({"feature_set": self.feature_set} if self.feature_set else {}),
                **({"gender_input": True} if self.gender_input else {}),
                **({"tuned": dict(self.tuned)} if self.tuned else {})}

    def budget(self) -> dict | None:
        """The tuning budget of tuned rows, else None."""
        return dict(self.tuned) or None

    def label(self, model: str) -> str:
        """A row's name in a table: the model, plus what sets it apart."""
        name = model
        if self.feature_set:
            name += f" · {DISPLAY_NAMES.get(self.feature_set, self.feature_set)}"
        if self.gender_input:
            name += " +gender"
        if self.tuned:
            name += " (tuned)"
        return name
