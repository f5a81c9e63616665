"""The demo (`make demo`, `python -m uninext_ros.demo`): the perception node prompted by a scripted planner.

One process holds a synthetic camera (`camera.py`, a seeded synthetic-world video with its ground truth kept in
memory), a scripted planner (`planner.py`: a class list, then a referring expression, then an ROI template) and a
recorder (`recorder.py`: annotated video and PNG frames); the real `perception_node` executable runs as a second
process (`node_process.py`). `summary.py` scores what the node published against the ground truth; `cli.py` runs it
all. Nothing here needs a camera, a GPU or a download.
"""
