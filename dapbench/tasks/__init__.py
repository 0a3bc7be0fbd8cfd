"""The eight MuJoCo tasks of the PPO-DAP protocol, with metadata and reference scores."""

from dapbench.tasks.registry import TASKS, TaskInfo, get_task, reference_scores

__all__ = ["TASKS", "TaskInfo", "get_task", "reference_scores"]
