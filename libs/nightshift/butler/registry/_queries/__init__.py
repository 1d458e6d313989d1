"""The ``where`` expression language: parser, syntax tree, join planner and SQL compiler."""

from ._ast import Node
from ._compiler import WhereCompiler, referenced_names
from ._parser import parse_where
from ._plan import JoinPlan, plan_join

__all__ = ["JoinPlan", "Node", "WhereCompiler", "parse_where", "plan_join", "referenced_names"]
