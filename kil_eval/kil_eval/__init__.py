"""Where the simulator meets perception and policy: demonstrations recorded from the scripted
experts, offline policy rollouts on oracle or perceived keypoints, the evaluation protocol and its
intervals, perception datasets, studies and reports.
"""
