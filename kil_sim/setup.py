from setuptools import find_packages, setup

PACKAGE = "kil_sim"

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
        "MuJoCo tabletop arm, gripper and RGB-D camera standing in for the hardware drivers; tasks, "
        "success checks, scripted experts and sim_node. Runs without the ML stack."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_node = kil_sim.sim_node:main",
        ]
    },
)
