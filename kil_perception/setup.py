from setuptools import find_packages, setup

PACKAGE = "kil_perception"

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
        "Keypoint specs, foundation-model feature backends, image matching, instance matching and "
        "tracking of semantic keypoints, 3-D lifting from RGB-D, and keypoint_node."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "keypoint_node = kil_perception.keypoint_node:main",
            "calibration_node = kil_perception.calibration_node:main",
            "extract = kil_perception.extract:main",
            "annotate = kil_perception.annotate:main",
        ]
    },
)
