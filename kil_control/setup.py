from setuptools import find_packages, setup

PACKAGE = "kil_control"

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
        "The robot side of KIL, without the ML stack: chunk interpolation with the control path's "
        "safety limits (interpolator_node) and the Lite6 and UR5e adapters (lite6_node, ur5e_node)."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "interpolator_node = kil_control.interpolator_node:main",
            "lite6_node = kil_control.lite6_node:main",
            "ur5e_node = kil_control.ur5e_node:main",
        ]
    },
)
