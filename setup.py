from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="vggt-npu",
    version="0.1.0",
    description="VGGT (Visual Geometry Grounded Transformer) for Ascend NPUs, NVIDIA GPUs and CPUs",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["vggt", "vggt.*", "training", "training.*"]),
    install_requires=requirements,
    extras_require={
        # with the optional packages, so that CI runs the compare, export, video and viewer tests; the tools are pinned
        # (ruff exactly: its selected rule families grow with releases) so a new release cannot turn a fresh run red
        "test": [
            "pytest>=7,<10",
            "hypothesis>=6.100,<7",
            "ruff==0.17.6",
            "matplotlib",
            "pycolmap>=3.12",
            "trimesh",
            "scipy",
            "av",
            "viser",
            'gradio>=6,<7; python_version >= "3.10"',  # vggt app tests (Gradio 6's api_visibility; with gradio_client)
        ],
        "compare": ["matplotlib"],  # test/compare_runs.py's loss-curve plot
        "export": ["pycolmap>=3.12", "trimesh", "scipy"],  # predict --export glb,colmap and --ba (scipy: coloured GLB)
        "video": ["av"],  # vggt predict --images VIDEO
        "demo": ["viser"],  # vggt view
        # vggt app; current gradio needs Python >= 3.10 (and pins Pillow below 13)
        "app": ['gradio>=6,<7; python_version >= "3.10"', "pycolmap>=3.12", "trimesh", "scipy", "av"],
        "eval": ["scipy"],  # point-map metrics (vggt.evaluation.point_metrics: nearest neighbours)
    },
    entry_points={"console_scripts": ["vggt = vggt.cli:main"]},
)
