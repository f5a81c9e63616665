"""ros2 launch uninext_ros perception.launch.py [image_topic:=/camera/image_raw] [use_compressed:=true] ...

Starts the perception node (a lifecycle node that configures and activates itself unless autostart is false in the
parameter file) with params_file (default config/perception.yaml), the model and transport arguments below that are
given on top (left out or empty, the parameter file's value stands), and the Fast DDS profile with a 32 MB
shared-memory segment so camera-sized images are not lost between processes. Everything else is a parameter of the
node: see config/perception.yaml and the README.
"""

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "namespace": ("", "Namespace of the node and of its topics."),
    "image_topic": ("image", "Camera image topic (raw sensor_msgs/Image); with use_compressed, its /compressed."),
}
# Node parameters that can also be given as launch arguments (value type, description). Empty (the default) leaves
# the parameter to params_file, so a copied and edited parameter file is not overridden by these defaults.
PARAMETER_ARGUMENTS = {
    "use_compressed": (bool, "Subscribe to <image_topic>/compressed (jpeg/png) instead of raw images (true/false)."),
    "preset": (str, "Model preset: tiny, r50, convnext_l or vit_h."),
    "backend": (str, "Inference backend: torch, onnxruntime or tensorrt."),
    "device": (str, "Device of the torch backend: cpu or cuda."),
    "torch_fp16": (bool, "torch on cuda: float16 autocast (true/false)."),
    "cuda_graphs": (bool, "torch on cuda: replay the network from CUDA graphs (true/false)."),
    "checkpoint": (str, "Model weights (.safetensors or .pth)."),
    "engine_path": (str, "ONNX model folder (onnxruntime) or TensorRT engine cache folder."),
}


def _perception_node(context: LaunchContext) -> list[LifecycleNode]:
    overrides = {}
    for name, (value_type, _) in PARAMETER_ARGUMENTS.items():
        argument = LaunchConfiguration(name)
        if argument.perform(context) != "":
            overrides[name] = ParameterValue(argument, value_type=value_type)
    image_topic = LaunchConfiguration("image_topic")
    return [LifecycleNode(
        package="uninext_ros",
        executable="perception_node",
        name="uninext_perception",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", image_topic), ("image/compressed", [image_topic, "/compressed"])],
        # On Ctrl-C the node stops at once, but its interpreter then needs ~5 s to exit with torch loaded (4.6-5.0 s
        # measured on 2 busy cores): launch's default 5 s before escalating to SIGTERM is too tight.
        sigterm_timeout=LaunchConfiguration("sigterm_timeout", default="20"),
    )]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("uninext_ros")
    default_params = PathJoinSubstitution([share, "config", "perception.yaml"])
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, (default, text) in ARGUMENTS.items()]
    arguments += [DeclareLaunchArgument(name, default_value="", description=f"{text} Empty: as in params_file.")
                  for name, (_, text) in PARAMETER_ARGUMENTS.items()]
    arguments.append(DeclareLaunchArgument(
        "params_file", default_value=default_params,
        description="Parameter YAML file (parameters it leaves out keep the node's declared defaults)."))
    fastdds_profile = SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                             PathJoinSubstitution([share, "config", "fastdds_large_shm.xml"]))
    return LaunchDescription([*arguments, fastdds_profile, OpaqueFunction(function=_perception_node)])
