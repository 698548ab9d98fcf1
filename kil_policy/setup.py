from setuptools import find_packages, setup

PACKAGE = "kil_policy"

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
        "Keypoint transformer encoder and conditional-UNet diffusion action head, RGB baseline, "
        "datasets from rosbag2 demonstrations, the training CLI and policy_node."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_node = kil_policy.policy_node:main",
            "train = kil_policy.train:main",
            "bench = kil_policy.bench:main",
        ]
    },
)
