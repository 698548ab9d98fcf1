"""Keypoint transformer encoder and conditional-UNet diffusion action head, RGB baseline, datasets
from rosbag2 demonstrations, the training CLI and policy_node.
"""
