"""Read what the Modal SDK (1.6) would send to Modal, without an account.

The SDK keeps a function's definition (autoscaler, concurrency, snapshot, secrets...) and each
image layer's Dockerfile in the closures of their lazy loaders, and builds the protobufs only
when deploying. These helpers open those closures. They rely on SDK internals on purpose: a test
that breaks here after a Modal upgrade is telling us to re-check what we deploy."""

from __future__ import annotations

from typing import Any


def _impl(obj: Any) -> Any:
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(obj)


def _closure(fn: Any) -> dict[str, Any]:
    return dict(
        zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ()), strict=True)
    )


def function_definition(cls: Any) -> dict[str, Any]:
    """The arguments `modal deploy` turns into the class service function's definition."""
    return _closure(_impl(cls._get_class_service_function())._load)


def image_layers(image: Any, builder_version: str = "2025.06") -> list[list[str]]:
    """Dockerfile commands of each image layer, base first."""
    layers: list[list[str]] = []
    current = _impl(image)
    while current is not None:
        scope = _closure(current._load)
        make = scope.get("dockerfile_function")
        if make is not None:
            layers.append(list(make(builder_version).commands))
        bases = scope.get("base_images") or {}
        current = scope.get("base_image") or next(iter(bases.values()), None)
    return layers[::-1]


def mounts(image: Any) -> list[Any]:
    """Local files/packages added at container start (add_local_*): mount layers, top first."""
    found: list[Any] = []
    current = _impl(image)
    while current is not None:
        scope = _closure(current._load)
        if "mount" in scope:
            found.append(scope["mount"])
        current = scope.get("base_image") or next(
            iter((scope.get("base_images") or {}).values()), None
        )
    return found
