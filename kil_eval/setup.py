from setuptools import find_packages, setup

PACKAGE = "kil_eval"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["specs/*/*.yaml", "specs/*/*.png"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="KIL maintainers",
    maintainer_email="kil-maintainers@example.org",
    description=(
        "Joins the simulator with perception and policy: demonstrations from the scripted experts, "
        "offline policy rollouts, the evaluation protocol, perception datasets, studies and reports."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "record_demos = kil_eval.record_demos:main",
            "evaluate = kil_eval.evaluate:main",
            "perception_dataset = kil_eval.perception_dataset:main",
            "specs = kil_eval.specs:main",
            "report = kil_eval.report:main",
            "demo = kil_eval.demo:main",
        ]
    },
)
