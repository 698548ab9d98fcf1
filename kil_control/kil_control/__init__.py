"""The robot side of KIL, without the ML stack (no torch): 10 Hz action chunks upsampled into
servo setpoints with the control path's safety limits (``interpolation``, ``interpolator_node``)
and the adapters to the UFactory Lite6 (``lite6``, ``lite6_node``) and the UR5e (``ur5e``,
``ur5e_node``).
"""
