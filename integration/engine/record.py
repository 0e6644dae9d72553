"""Plain record classes for the modules every command imports (config, results, dispatch).

`dataclasses` costs a command about 12 ms of start-up (it imports `inspect`), a tenth of what
`msteams cache-show` may spend in all. This is the part of it those modules use: a class
decorator that reads the annotated fields and their defaults and writes `__init__`, `__repr__`
(without fields declared `repr=False`: secrets), `__eq__` and `replace()`; `field()` for mutable
defaults; `fields()` to list them. Modules off the start-up path keep using `dataclasses`.
"""
from __future__ import annotations

from typing import Any, Callable

_MISSING = object()


class Field:
    __slots__ = ("name", "default", "default_factory", "repr")

    def __init__(self, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None, repr: bool = True):
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr

    def value(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None, repr: bool = True) -> Any:
    return Field(default, default_factory, repr)


def fields(cls_or_obj) -> tuple[Field, ...]:
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    return cls.__record_fields__


def record(cls):
    """The decorated class gets `__init__(*args, **kwargs)` over its annotated fields, in order."""
    found: list[Field] = []
    for base in reversed(cls.__mro__[1:]):
        found.extend(getattr(base, "__record_fields__", ()))
    for name in cls.__dict__.get("__annotations__", {}):
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if isinstance(value, Field) and value.default is not _MISSING:
            setattr(cls, name, value.default)
        elif isinstance(value, Field):
            delattr(cls, name)
        found = [x for x in found if x.name != name] + [f]
    cls.__record_fields__ = tuple(found)
    names = [f.name for f in found]

    # (name, default, factory) in order: a result and a command's context are made on every
    # request of a busy service, so __init__ reads this rather than each Field.
    plan = tuple((f.name, f.default, f.default_factory) for f in found)
    known = frozenset(names)
    # Fields go straight into the instance's dict unless a class in the way has slots, its own
    # __setattr__ or a descriptor that sets a field (then setattr, as it would).
    plain = not any("__slots__" in c.__dict__ or "__setattr__" in c.__dict__ for c in cls.__mro__[:-1]) and \
        not any(hasattr(getattr(cls, n, None), "__set__") for n in names)

    def __init__(self, *args, **kwargs):
        if args:
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__}() takes at most {len(names)} positional arguments")
            for n in names[:len(args)]:
                if n in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for argument '{n}'")
            kwargs.update(zip(names, args))
        if not known.issuperset(kwargs):
            k = next(k for k in kwargs if k not in known)
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument '{k}'")
        values = {}
        for name, default, factory in plan:
            if name in kwargs:
                values[name] = kwargs[name]
            elif factory is not None:
                values[name] = factory()
            elif default is not _MISSING:
                values[name] = default
            else:
                raise TypeError(f"{cls.__name__}() missing required argument: '{name}'")
        if plain:
            self.__dict__.update(values)
        else:
            for name, value in values.items():
                setattr(self, name, value)
        post = getattr(self, "__post_init__", None)
        if post is not None:
            post()

    def __repr__(self):
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in found if f.repr)
        return f"{cls.__name__}({shown})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    def replace(self, **changes):
        """A copy with some fields changed (dataclasses.replace)."""
        values = {n: getattr(self, n) for n in names}
        values.update(changes)
        return cls(**values)

    cls.__record_fields_by_name__ = {f.name: f for f in found}
    cls.__init__ = __init__
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = __repr__
    if "__eq__" not in cls.__dict__:
        cls.__eq__ = __eq__
        cls.__hash__ = None
    if "replace" not in cls.__dict__:
        cls.replace = replace
    return cls
