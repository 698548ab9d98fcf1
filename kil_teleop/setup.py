from setuptools import find_packages, setup

PACKAGE = "kil_teleop"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="KIL maintainers",
    maintainer_email="kil-maintainers@example.org",
    description=(
        "Quest2ROS teleoperation mapping (teleop_node) and the episode recorder writing rosbag2 "
        "MCAP demonstrations (recorder_node)."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "recorder_node = kil_teleop.recorder_node:main",
            "teleop_node = kil_teleop.teleop_node:main",
        ]
    },
)
