"""Launch files, robot/camera/task configurations, RViz configuration and the node-graph
description they share (and ``run_graph``, which starts it without ``ros2 launch``). No nodes.
"""
