"""ros2 launch uninext_ros perception.launch.py [image_topic:=/camera/image_raw] [use_compressed:=true] ...

Starts the perception node (a lifecycle node that configures and activates itself unless autostart is false in the
parameter file) with config/perception.yaml, the arguments below on top, and the Fast DDS profile with a 32 MB
shared-memory segment so camera-sized images are not lost between processes. Everything else is a parameter of the
node: see config/perception.yaml and the README.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "namespace": ("", "Namespace of the node and of its topics."),
    "image_topic": ("image", "Camera image topic (raw sensor_msgs/Image); with use_compressed, its /compressed."),
    "use_compressed": ("false", "Subscribe to <image_topic>/compressed (jpeg/png) instead of raw images."),
    "preset": ("tiny", "Model preset: tiny, r50, convnext_l or vit_h."),
    "backend": ("torch", "Inference backend: torch, onnxruntime or tensorrt."),
    "device": ("cpu", "Device of the torch backend: cpu or cuda."),
    "checkpoint": ("", "Model weights; empty: the shipped small model (tiny preset)."),
    "engine_path": ("", "ONNX model folder (onnxruntime) or TensorRT engine cache folder."),
}


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("uninext_ros")
    default_params = PathJoinSubstitution([share, "config", "perception.yaml"])
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, (default, text) in ARGUMENTS.items()]
    arguments.append(DeclareLaunchArgument(
        "params_file", default_value=default_params,
        description="Parameter YAML file (parameters it leaves out keep the node's declared defaults)."))
    params_file = LaunchConfiguration("params_file")
    image_topic = LaunchConfiguration("image_topic")
    node = LifecycleNode(
        package="uninext_ros",
        executable="perception_node",
        name="uninext_perception",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            params_file,
            {
                "preset": ParameterValue(LaunchConfiguration("preset"), value_type=str),
                "backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
                "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
                "checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                "engine_path": ParameterValue(LaunchConfiguration("engine_path"), value_type=str),
                "use_compressed": ParameterValue(LaunchConfiguration("use_compressed"), value_type=bool),
            },
        ],
        remappings=[("image", image_topic), ("image/compressed", [image_topic, "/compressed"])],
    )
    fastdds_profile = SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                             PathJoinSubstitution([share, "config", "fastdds_large_shm.xml"]))
    return LaunchDescription([*arguments, fastdds_profile, node])
