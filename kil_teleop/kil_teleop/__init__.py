"""Quest2ROS teleoperation mapping (teleop_node) and the episode recorder writing rosbag2 MCAP
demonstrations (recorder_node).
"""
