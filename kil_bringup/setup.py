from glob import glob

from setuptools import find_packages, setup

PACKAGE = "kil_bringup"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/foxglove", glob("foxglove/*.json")),
        (f"share/{PACKAGE}/dds", glob("dds/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="KIL maintainers",
    maintainer_email="kil-maintainers@example.org",
    description=(
        "Launch files, robot/camera/task configurations, RViz configuration and the node-graph "
        "description they share (and its runner). No nodes of its own."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "run_graph = kil_bringup.run_graph:main",
        ]
    },
)
