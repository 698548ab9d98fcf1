"""Launch files, robot/camera/task configurations, RViz configuration, the node-graph description
they share, and robot adapters.
"""
