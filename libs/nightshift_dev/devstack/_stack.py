from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType

from . import _dav, _kafka, _postgres, _registry, _s3
from ._settings import StackSettings

COMPONENTS: dict[str, ModuleType] = {"kafka": _kafka, "postgres": _postgres, "s3": _s3, "registry": _registry,
                                     "dav": _dav}


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    ready: bool
    log: str


def _select(names: Iterable[str] | None) -> list[str]:
    chosen = list(names) if names else list(COMPONENTS)
    unknown = [n for n in chosen if n not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown stack component(s) {unknown}; choose from {sorted(COMPONENTS)}")
    return chosen


def up(settings: StackSettings | None = None, names: Iterable[str] | None = None) -> dict[str, str]:
    """Start (or reuse) the chosen servers in parallel and return their environment."""
    s = settings or StackSettings()
    chosen = _select(names)
    s.state_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        futures = [pool.submit(COMPONENTS[n].start, s) for n in chosen]
        errors = []
        for future in futures:
            try:
                future.result()
            except Exception as exc:  # collect all so the user sees every problem at once
                errors.append(exc)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        from ._errors import StackError

        raise StackError("\n\n".join(str(e) for e in errors)) from errors[0]
    return stack_env(s, chosen)


def down(settings: StackSettings | None = None, names: Iterable[str] | None = None) -> list[str]:
    """Stop the chosen servers; keeps their data. Returns the names that were stopped."""
    s = settings or StackSettings()
    return [n for n in _select(names) if COMPONENTS[n].stop(s)]


def status(settings: StackSettings | None = None) -> list[ComponentStatus]:
    s = settings or StackSettings()
    return [
        ComponentStatus(name, mod.running(s), mod.ready(s), str(mod.log_file(s)))
        for name, mod in COMPONENTS.items()
    ]


def stack_env(settings: StackSettings | None = None, names: Iterable[str] | None = None) -> dict[str, str]:
    s = settings or StackSettings()
    out: dict[str, str] = {}
    for n in _select(names):
        out.update(COMPONENTS[n].env(s))
    return out
