"""Keypoint specs, foundation-model feature backends, image matching, instance matching and
tracking of semantic keypoints, 3-D lifting from RGB-D, and keypoint_node.
"""
