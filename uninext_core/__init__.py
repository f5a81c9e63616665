"""uninext_core: the UNINEXT model, data, task logic, metrics and deployment. No ROS import anywhere."""

from uninext_core.model.build import build_model

__all__ = ["build_model"]
