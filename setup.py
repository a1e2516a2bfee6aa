"""neon-search: hyperparameter-optimization-first experiments for the neon deep learning engine."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="neon-search",
    version="0.1.0",
    description="Hyperparameter search over neon models, with MLflow records of every trial",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(
        include=["neon", "neon.*", "search", "search.*", "experiments", "experiments.*"]
    ),
    include_package_data=True,
    install_requires=[
        "numpy>=1.26",
        "scipy>=1.11",
        "numba>=0.60",
        "pyyaml>=6",
        "pandas>=2",
        "hyperopt>=0.2.7",
        "mlflow>=3.17,<3.19",
        "sqlalchemy<2.1",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "dask[distributed]>=2024.1",
        "ml_dtypes>=0.3",
        "scikit-learn>=1.3",
        "threadpoolctl>=3",
        "pillow>=10",
        "filelock>=3.12",
        # the CPU backend's GEMMs (neon/backends/cpu_blas.py); OpenBLAS elsewhere
        "mkl>=2025; sys_platform == 'linux' and platform_machine == 'x86_64'",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2.2", "ruff>=0.5", "playwright>=1.40",
                 "hypothesis>=6.100", "import-linter>=2.0", "mkdocs>=1.6",
                 "mkdocs-material>=9.5"],
        "gpu": ["cupy-cuda12x>=13"],
        "bench": ["torch==2.13.0"],
    },
    entry_points={
        "console_scripts": [
            "neon=experiments.neon_cli:main",
            "neon-search=experiments.cli:main",
            "neon-macrobatch=neon.datasets.macrobatch:main",
        ]
    },
)
