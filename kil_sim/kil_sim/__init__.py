"""MuJoCo tabletop arm, gripper and RGB-D camera standing in for the hardware drivers; tasks,
success checks, scripted experts, offline episodes through ``kil_control``'s interpolation, and
sim_node. Runs without the ML stack (no torch).
"""
