"""Workflow identity: which workflow an invocation belongs to, and its lineage."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WorkflowIdentity"]


@dataclass(frozen=True, slots=True)
class WorkflowIdentity:
    """The identity of one workflow.

    Attributes:
        workflow_id: The id of the workflow: the invocation id of the invocation that started it.
        workflow_type: The task id of that invocation.
        parent_workflow_id: The workflow that started this one as a child workflow, or None for
            a workflow started from outside any task.
    """

    workflow_id: str
    workflow_type: str
    parent_workflow_id: str | None = None

    @property
    def is_child(self) -> bool:
        """True when another workflow started this one."""
        return self.parent_workflow_id is not None
