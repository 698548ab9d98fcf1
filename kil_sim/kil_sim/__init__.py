"""MuJoCo tabletop arm, gripper and RGB-D camera standing in for the hardware drivers; tasks,
success checks, scripted experts, sim_node and the evaluation harness.
"""
