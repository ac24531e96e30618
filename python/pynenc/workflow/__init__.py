"""Workflow identity and the `wf` context of a running task."""

from pynenc.workflow.context import WorkflowContext
from pynenc.workflow.identity import WorkflowIdentity

__all__ = ["WorkflowContext", "WorkflowIdentity"]
