"""Named variants of one sort — corruption kinds, augmentation families, input stages — registered once.

The way timm registers models: each variant is a name with its config class (what params.yaml may set
for it, with its ranges) and its function (what it does). The config schema builds its choices from the
registry (a discriminated union, the allowed names, the fields of a section), so adding a variant is one
class and one function, and the tests, parametrised over the registry, cover it without being told.

The class is declared here in the config package and the function in the data or model layer, which
registers it against the name. The two cannot share a module: the config tree must load without torch,
kornia or scipy (``steelflow serve`` runs in an image without PyTorch; the CLI starts in a fifth of a
second), and training must never import the evaluation corruptions (``tests/unit/test_augment.py``). A name
declared without a function is caught by :meth:`Registry.unimplemented` (a test asserts it is empty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, Generic, Literal, TypeVar, Union

from pydantic import BaseModel, Field

C = TypeVar("C", bound=type[BaseModel])
F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Variants by name: a config class (or none) and a default per name, and a function per name.

    ``register`` (a class decorator) and ``declare`` add names in the order params.yaml shows them;
    ``implements`` (a function decorator) adds functions in the order they run, where that matters.
    """

    def __init__(self, what: str, key: str = "kind") -> None:
        self.what = what  # how an error names one: "corruption kind", "input_norm"
        self.key = key  # the field of a config class that holds its name (a discriminated union's tag)
        self._configs: dict[str, type[BaseModel] | None] = {}
        self._defaults: dict[str, BaseModel] = {}
        self._docs: dict[str, str] = {}
        self._functions: dict[str, F] = {}

    # --- declaring ------------------------------------------------------------------------------------

    def register(self, name: str | None = None, default: dict[str, Any] | None = None) -> Callable[[C], C]:
        """Class decorator: the config class of variant ``name`` (by default, the literal of its
        :attr:`key` field), built from ``default`` where the section may leave the variant out."""

        def add(cls: C) -> C:
            tag = name if name is not None else _literal_of(cls, self.key)
            self._add(tag, cls, (cls.__doc__ or "").strip())
            if default is not None:
                self._defaults[tag] = cls(**default)
            return cls

        return add

    def declare(self, name: str, doc: str) -> None:
        """A variant with no parameters of its own (an input stage)."""
        self._add(name, None, doc)

    def implements(self, name: str) -> Callable[[F], F]:
        """Function decorator: what variant ``name`` does (declared already)."""

        def add(fn: F) -> F:
            if name not in self._configs:
                raise ValueError(f"{fn.__qualname__} implements {self.what} {name!r}, which is not declared")
            if name in self._functions:
                raise ValueError(f"{self.what} {name!r} has two functions")
            self._functions[name] = fn
            return fn

        return add

    def _add(self, name: str, cls: type[BaseModel] | None, doc: str) -> None:
        if name in self._configs:
            raise ValueError(f"{self.what} {name!r} is declared twice")
        self._configs[name] = cls
        self._docs[name] = doc

    # --- reading --------------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """Every variant, in declaration order."""
        return tuple(self._configs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._configs)

    def __contains__(self, name: object) -> bool:
        return name in self._configs

    def __len__(self) -> int:
        return len(self._configs)

    def config(self, name: str) -> type[BaseModel]:
        cls = self._configs.get(self._known(name))
        if cls is None:
            raise ValueError(f"{self.what} {name!r} has no config class")
        return cls

    def default(self, name: str) -> BaseModel:
        return self._defaults[self._known(name)]

    def doc(self, name: str) -> str:
        return self._docs[self._known(name)]

    def function(self, name: str) -> F:
        """The function of ``name``; ``ValueError`` naming the allowed ones for a name not declared."""
        if self._known(name) not in self._functions:
            raise ValueError(f"{self.what} {name!r} has no function registered")
        return self._functions[name]

    def functions(self) -> dict[str, F]:
        """name → function, in the order the functions were registered."""
        return dict(self._functions)

    def unimplemented(self) -> tuple[str, ...]:
        """Names declared without a function (importing the implementing module registers them)."""
        return tuple(n for n in self._configs if n not in self._functions)

    def _known(self, name: Any) -> str:
        if name not in self._configs:
            raise ValueError(f"unknown {self.what} {name!r} (allowed: {', '.join(self._configs)})")
        return name

    # --- schema ---------------------------------------------------------------------------------------

    def literal(self) -> Any:
        """``Literal[name, ...]``: a field that takes one of the names."""
        return Literal[self.names]  # type: ignore[valid-type]

    def union(self) -> Any:
        """The config classes as one discriminated union on :attr:`key` (a list entry of any variant)."""
        classes = tuple(c for c in self._configs.values() if c is not None)
        return Annotated[Union[classes], Field(discriminator=self.key)]  # noqa: UP007 (a runtime tuple)


def _literal_of(cls: type[BaseModel], key: str) -> str:
    """The one value of ``cls``'s ``Literal`` field ``key``."""
    field = cls.model_fields.get(key)
    values = getattr(field.annotation, "__args__", ()) if field is not None else ()
    if len(values) != 1 or not isinstance(values[0], str):
        raise ValueError(f"{cls.__name__}: needs a field {key}: Literal['<name>'] to register without a name")
    return values[0]
