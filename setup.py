"""Packaging for kemo: video emotion recognition with Keras 3 and scikit-learn."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent

setup(
    name="kemo",
    version="0.1.0",
    description=(
        "Video emotion recognition (EmotiW 2017: aggregated CNN features, C3D, "
        "residual LSTM, score fusion) with Keras 3 and scikit-learn"
    ),
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # The top-level weights/ folder (shipped weight files and their model
    # cards) installs as the package kemo.shipped, so a plain, non-editable
    # `pip install .` carries the files and importlib.resources finds them.
    packages=find_packages(include=["kemo", "kemo.*"]) + ["kemo.shipped"],
    package_dir={"kemo.shipped": "weights"},
    package_data={"kemo.shipped": ["*.keras", "*.weights.h5", "*.json", "*.md"]},
    install_requires=[
        "keras>=3.4",
        "h5py>=3",
        "tensorflow>=2.16",
        "mtcnn>=1.0,<2",
        # 4.5+ reads mp4 (H.264) and avi (XVID, MJPG) through its bundled FFmpeg.
        "opencv-python-headless>=4.5",
        "scikit-learn>=1.6",
        "numpy>=1.24",
        "tqdm>=4.60",
        "matplotlib>=3.6",
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "nbmake>=1.4",
            "pytest-xdist>=3.6",  # pyproject.toml's addopts run the tests in two processes
            "ruff>=0.4",
            "hypothesis>=6",
            "ipykernel>=6",
        ],
        "tutorials": ["jupyter>=1.0"],
        # --scheduler / kemo.parallel: videos processed on a Dask cluster
        "dask": ["dask[distributed]>=2024.1"],
    },
    entry_points={"console_scripts": ["kemo = kemo.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
