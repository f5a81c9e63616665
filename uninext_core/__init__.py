"""uninext_core: the UNINEXT model, data, task logic, metrics and deployment. No ROS import anywhere."""
