"""Registry of event types: `(event_type, schema_version) -> payload struct`.

A new version of a type is added beside the old one with
`DEFAULT_REGISTRY.register("order.placed", 2, OrderPlacedV2)`; decoding picks the struct by the
envelope's `event_type` and `schema_version`, so both versions are accepted side by side. Each entry
precomputes what decoding needs (a typed decoder, the money and INN fields to check after it).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass

import msgspec
import msgspec.inspect
import msgspec.structs

from schemas.events import (
    FactoringDefaulted,
    FactoringFunded,
    FactoringRepaid,
    FactoringRequested,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    OrderAccepted,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    PatentDealClosed,
    PatentListed,
    PatentWithdrawn,
    Payload,
)
from schemas.fields import InnRule, MoneyRule
from schemas.topics import Family


@dataclass(frozen=True)
class PayloadSpec:
    """One registered `(event_type, schema_version)` and what decoding its payload needs."""

    event_type: str
    schema_version: int
    payload_type: type[Payload]
    family: Family
    money_fields: tuple[tuple[str, bool], ...]
    """`(field name, must be > 0)` of every money field."""
    inn_fields: tuple[str, ...]
    decoder: msgspec.json.Decoder[Payload]
    requires_any_field: bool
    """True for types whose payload must not be empty although every field is optional."""
    optional_fields: tuple[tuple[str, object], ...]
    """`(field name, default)` of the fields that may be absent."""
    required_keys: int
    """How many fields have no default (their keys are always present in a valid payload)."""
    required_strings: int
    """How many of those are JSON strings whatever their value (not nullable)."""
    variable_fields: tuple[tuple[str, object, bool], ...]
    """`(name, default or NODEFAULT, is a JSON string when not null)` of the optional and the
    nullable fields: whether their key and a string value were present depends on the value."""
    null_key_patterns: tuple[tuple[str, re.Pattern[bytes]], ...]
    """For each field whose default is None: a pattern matching its key with an explicit null."""
    string_fields: tuple[str, ...]
    """Fields holding a JSON string when set (text, ids, enums; not dates): no control characters."""
    date_fields: tuple[str, ...]
    """Fields holding a date (years 2000-2099)."""


def _field_rules(payload_type: type[Payload]) -> tuple[tuple[tuple[str, bool], ...], tuple[str, ...]]:
    money: list[tuple[str, bool]] = []
    inns: list[str] = []
    for name, hint in typing.get_type_hints(payload_type, include_extras=True).items():
        for marker in getattr(hint, "__metadata__", ()):
            if isinstance(marker, MoneyRule):
                money.append((name, marker.positive))
            elif isinstance(marker, InnRule):
                inns.append(name)
    return tuple(money), tuple(inns)


def _is_json_string(info: msgspec.inspect.Type) -> bool:
    """True when every non-null value of the type is a JSON string (str, enum of str, date...)."""
    if isinstance(info, msgspec.inspect.Metadata):
        return _is_json_string(info.type)
    if isinstance(info, msgspec.inspect.UnionType):
        kinds = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        return all(_is_json_string(t) for t in kinds)
    if isinstance(info, msgspec.inspect.LiteralType):
        return all(isinstance(value, str) for value in info.values)
    string_types = (msgspec.inspect.StrType, msgspec.inspect.DateType, msgspec.inspect.DateTimeType)
    return isinstance(info, string_types)


def _is_date(info: msgspec.inspect.Type) -> bool:
    if isinstance(info, msgspec.inspect.Metadata):
        return _is_date(info.type)
    if isinstance(info, msgspec.inspect.UnionType):
        return any(_is_date(t) for t in info.types)
    return isinstance(info, msgspec.inspect.DateType)


def _is_nullable(info: msgspec.inspect.Type) -> bool:
    return isinstance(info, msgspec.inspect.UnionType) and any(
        isinstance(t, msgspec.inspect.NoneType) for t in info.types
    )


def null_key_pattern(name: str) -> re.Pattern[bytes]:
    """Matches `"<name>": null` in JSON text; only a key can be followed by a colon, so a match is
    never inside a string value."""
    return re.compile(b'"' + re.escape(name.encode()) + rb'"[ \t\n\r]*:[ \t\n\r]*null')


def make_spec(
    event_type: str, schema_version: int, payload_type: type[Payload], *, requires_any_field: bool = False
) -> PayloadSpec:
    """Describe `(event_type, schema_version)`; its family is the part of `event_type` before the dot."""
    if schema_version < 1:
        raise ValueError(f"schema versions start at 1, got {schema_version}")
    family = Family(event_type.partition(".")[0])
    money_fields, inn_fields = _field_rules(payload_type)
    fields = msgspec.structs.fields(payload_type)
    optional = tuple((f.name, f.default) for f in fields if f.default is not msgspec.NODEFAULT)
    struct_info = msgspec.inspect.type_info(payload_type)
    assert isinstance(struct_info, msgspec.inspect.StructType)
    infos = {f.name: f.type for f in struct_info.fields}
    required = [f.name for f in fields if f.default is msgspec.NODEFAULT]
    variable = tuple(
        (f.name, f.default, _is_json_string(infos[f.name]))
        for f in fields
        if f.default is not msgspec.NODEFAULT or _is_nullable(infos[f.name])
    )
    fixed_strings = sum(
        1 for name in required if _is_json_string(infos[name]) and not _is_nullable(infos[name])
    )
    return PayloadSpec(
        event_type=event_type,
        schema_version=schema_version,
        payload_type=payload_type,
        family=family,
        money_fields=money_fields,
        inn_fields=inn_fields,
        decoder=msgspec.json.Decoder(payload_type),
        requires_any_field=requires_any_field,
        optional_fields=optional,
        required_keys=len(required),
        required_strings=fixed_strings,
        variable_fields=variable,
        null_key_patterns=tuple(
            (name, null_key_pattern(name)) for name, default in optional if default is None
        ),
        string_fields=tuple(
            f.name for f in fields if _is_json_string(infos[f.name]) and not _is_date(infos[f.name])
        ),
        date_fields=tuple(f.name for f in fields if _is_date(infos[f.name])),
    )


class Registry:
    """A set of `(event_type, schema_version)` entries. `DEFAULT_REGISTRY` holds contract v1."""

    def __init__(self, specs: tuple[PayloadSpec, ...] = ()) -> None:
        self._specs: dict[tuple[str, int], PayloadSpec] = {}
        self._versions: dict[str, tuple[int, ...]] = {}
        self._by_payload_type: dict[type[Payload], PayloadSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: PayloadSpec) -> None:
        """Add an entry; a type and version can be registered once."""
        key = (spec.event_type, spec.schema_version)
        if key in self._specs:
            raise ValueError(f"{spec.event_type} v{spec.schema_version} is already registered")
        self._specs[key] = spec
        known = (*self.versions(spec.event_type), spec.schema_version)
        self._versions[spec.event_type] = tuple(sorted(known))
        self._by_payload_type[spec.payload_type] = spec

    def register(
        self,
        event_type: str,
        schema_version: int,
        payload_type: type[Payload],
        *,
        requires_any_field: bool = False,
    ) -> PayloadSpec:
        """Describe and add `(event_type, schema_version) -> payload_type`."""
        spec = make_spec(event_type, schema_version, payload_type, requires_any_field=requires_any_field)
        self.add(spec)
        return spec

    def lookup(self, event_type: str, schema_version: int) -> PayloadSpec | None:
        """The entry for a type and version, or None when that pair is not registered."""
        return self._specs.get((event_type, schema_version))

    def versions(self, event_type: str) -> tuple[int, ...]:
        """The registered versions of `event_type`, ascending; empty when the type is unknown."""
        return self._versions.get(event_type, ())

    def spec_of(self, payload_type: type[Payload]) -> PayloadSpec:
        """The entry a payload struct was registered under (KeyError when it never was)."""
        return self._by_payload_type[payload_type]

    def all_specs(self) -> tuple[PayloadSpec, ...]:
        """Every entry, ordered by event type and version."""
        return tuple(self._specs[key] for key in sorted(self._specs))

    def copy(self) -> Registry:
        """An independent registry with the same entries (to add versions without touching this one)."""
        return Registry(self.all_specs())


DEFAULT_REGISTRY = Registry()
"""Contract v1: the 14 event types at version 1 (what `decode_event` uses unless told otherwise)."""
DEFAULT_REGISTRY.register("member.joined", 1, MemberJoined)
DEFAULT_REGISTRY.register("member.updated", 1, MemberUpdated, requires_any_field=True)
DEFAULT_REGISTRY.register("member.left", 1, MemberLeft)
DEFAULT_REGISTRY.register("order.placed", 1, OrderPlaced)
DEFAULT_REGISTRY.register("order.accepted", 1, OrderAccepted)
DEFAULT_REGISTRY.register("order.completed", 1, OrderCompleted)
DEFAULT_REGISTRY.register("order.cancelled", 1, OrderCancelled)
DEFAULT_REGISTRY.register("patent.listed", 1, PatentListed)
DEFAULT_REGISTRY.register("patent.deal_closed", 1, PatentDealClosed)
DEFAULT_REGISTRY.register("patent.withdrawn", 1, PatentWithdrawn)
DEFAULT_REGISTRY.register("factoring.requested", 1, FactoringRequested)
DEFAULT_REGISTRY.register("factoring.funded", 1, FactoringFunded)
DEFAULT_REGISTRY.register("factoring.repaid", 1, FactoringRepaid)
DEFAULT_REGISTRY.register("factoring.defaulted", 1, FactoringDefaulted)

lookup = DEFAULT_REGISTRY.lookup
versions = DEFAULT_REGISTRY.versions
spec_of = DEFAULT_REGISTRY.spec_of
all_specs = DEFAULT_REGISTRY.all_specs
