"""Tasks: units of algorithmic work on in-memory objects (no I/O in tasks, REQ-0009/0013)."""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._config import PipelineTaskConfig, TaskConfig
from ._connections import PipelineTaskConnections
from ._exceptions import PipelineDefinitionError

if TYPE_CHECKING:
    from ._context import QuantumContext

__all__ = ["PipelineTask", "Struct", "Task", "code_version_of"]

_T = TypeVar("_T", bound="Task")


class Struct(SimpleNamespace):
    """The result of :meth:`Task.run`: named values (``Struct(calexp=exp, n_sources=12)``)."""

    def as_dict(self) -> dict[str, Any]:
        """The values by name."""
        return dict(vars(self))


class Task:
    """A unit of work with a pydantic config; may own sub-tasks (REQ-0008).

    Parameters
    ----------
    config : TaskConfig, optional
        Defaults to ``ConfigClass()``.
    log : logging.Logger, optional
        Parent logger; the task logs to ``<parent>.<name>``.
    name : str, optional
        The task's name (its label in a pipeline); the class name by default.
    """

    ConfigClass: ClassVar[type[TaskConfig]] = TaskConfig

    def __init__(self, config: TaskConfig | None = None, *, log: logging.Logger | None = None,
                 name: str | None = None) -> None:
        if config is None:
            config = self.ConfigClass()
        if not isinstance(config, self.ConfigClass):
            raise TypeError(f"{type(self).__name__} needs a {self.ConfigClass.__name__}, got {type(config).__name__}")
        self.config = config
        self.name = name or type(self).__name__
        parent = log or logging.getLogger("nightshift.pipe.tasks")
        self.log = parent.getChild(self.name)

    def make_subtask(self, field: str, task_class: type[_T]) -> _T:
        """Create a sub-task from the nested config field ``field`` (logging under this task's logger)."""
        sub_config = getattr(self.config, field, None)
        if not isinstance(sub_config, task_class.ConfigClass):
            raise PipelineDefinitionError(
                f"{type(self).__name__}.config.{field} is not a {task_class.ConfigClass.__name__}"
            )
        return task_class(sub_config, log=self.log, name=field)

    def run(self, *args: Any, **kwargs: Any) -> Struct:  # pragma: no cover - abstract
        """Do the work on in-memory objects and return them in a :class:`Struct`."""
        raise NotImplementedError


class PipelineTask(Task):
    """A task the framework can run over data: it declares its connections.

    Subclasses set ``ConfigClass`` (a :class:`PipelineTaskConfig`) and
    ``ConnectionsClass``, and implement :meth:`run` whose keyword arguments
    are the input connection names and whose :class:`Struct` result has one
    attribute per output connection. The framework reads the inputs and
    writes the outputs through the butler it is given (REQ-0009, REQ-0023);
    tasks that need to read only some inputs override :meth:`run_quantum`.

    Attributes
    ----------
    code_version : str, optional
        Class attribute naming the code version; by default a hash of the
        task's source (so memoization notices code changes, REQ-0031).
    """

    ConfigClass: ClassVar[type[PipelineTaskConfig]] = PipelineTaskConfig
    ConnectionsClass: ClassVar[type[PipelineTaskConnections]] = PipelineTaskConnections
    code_version: ClassVar[str | None] = None

    def __init__(self, config: PipelineTaskConfig | None = None, *, log: logging.Logger | None = None,
                 name: str | None = None, init_inputs: Mapping[str, Any] | None = None) -> None:
        super().__init__(config, log=log, name=name)
        self.init_inputs = dict(init_inputs or {})

    def init_outputs(self) -> dict[str, Any]:
        """Objects for the task's init-output connections (written once per run)."""
        return {}

    def run_quantum(self, context: QuantumContext) -> None:
        """Read inputs, call :meth:`run`, write outputs; all I/O through ``context``.

        Override to read lazily (``context.get(name)``): only the datasets read
        are recorded as *actual* inputs (REQ-0024).
        """
        inputs = context.get_all()
        result = self.run(**inputs)
        context.put_all(result)


def code_version_of(task_class: type) -> str:
    """The code version of a task class: its ``code_version`` or a hash of its module's source."""
    declared = getattr(task_class, "code_version", None)
    if declared:
        return str(declared)
    try:
        source = inspect.getsource(inspect.getmodule(task_class) or task_class)
    except (OSError, TypeError):
        source = f"{task_class.__module__}.{task_class.__qualname__}"
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    return f"{task_class.__module__}.{task_class.__qualname__}@src:{digest}"
