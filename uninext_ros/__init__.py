"""uninext_ros: rclpy adapters (node, conversions, rosbag tools) around the uninext_core perception session."""
