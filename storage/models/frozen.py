"""What every stored model shares: frozen values, and times at the precision every store keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict

from storage.timecodec import from_millis, to_millis


def _stored_precision(value: datetime) -> datetime:
    """Aware UTC at millisecond precision: exactly what every backend stores and reads back."""
    if value.tzinfo is UTC and not value.microsecond % 1000:
        return value  # already so (every time read back from a store): a tenth of the work
    if value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return from_millis(to_millis(value))


Instant = Annotated[datetime, AfterValidator(_stored_precision)]


class Frozen(BaseModel):
    """A value that never changes once built, and refuses fields it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_stored(cls, values: dict[str, Any]) -> Self:
        """The model of ``values`` read back from a store, taken as they are: every field given,
        each already of the field's type (it was validated on its way in, and the reader
        converted each column). What ``model_construct`` makes, without its per-field pass over
        defaults and aliases: a push reads several models per event, on the event loop.
        ``values`` becomes the model's own: the caller hands it over."""
        model = cls.__new__(cls)
        object.__setattr__(model, "__dict__", values)
        object.__setattr__(model, "__pydantic_fields_set__", set(values))
        object.__setattr__(model, "__pydantic_extra__", None)
        object.__setattr__(model, "__pydantic_private__", None)
        return model
