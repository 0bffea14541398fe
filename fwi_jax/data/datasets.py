"""The OpenFWI 2D datasets and their constants (the reference's dataset_config.json)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Constants of one OpenFWI dataset."""

    name: str
    data_min: float  # seismic min over the dataset (normalization)
    data_max: float
    train_files: int
    val_files: int
    naming: str  # "vel": data/dataN.npy + model/modelN.npy; "fault": seisX.npy + velX.npy
    label_min: float = 1500.0  # m/s
    label_max: float = 4500.0
    file_size: int = 500
    shots: int = 5
    time_samples: int = 1000
    receivers: int = 70
    depth: int = 70
    width: int = 70

    @property
    def seismic_shape(self) -> tuple[int, int, int]:
        """One sample on disk: (shots, time, receivers)."""
        return (self.shots, self.time_samples, self.receivers)

    @property
    def velocity_shape(self) -> tuple[int, int, int]:
        return (1, self.depth, self.width)

    def normalization(self) -> dict[str, float]:
        """The constants a checkpoint stores, so inference normalizes exactly as training did."""
        return {k: getattr(self, k) for k in ("data_min", "data_max", "label_min", "label_max")}


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("flatvel-a", -26.95, 52.77, 48, 12, "vel"),
        DatasetSpec("flatvel-b", -27.17, 56.05, 48, 12, "vel"),
        DatasetSpec("curvevel-a", -27.11, 55.10, 48, 12, "vel"),
        DatasetSpec("curvevel-b", -29.04, 57.03, 48, 12, "vel"),
        DatasetSpec("flatfault-a", -26.10, 50.86, 96, 12, "fault"),
        DatasetSpec("flatfault-b", -24.86, 50.28, 96, 12, "fault"),
        DatasetSpec("curvefault-a", -26.48, 52.32, 96, 12, "fault"),
        DatasetSpec("curvefault-b", -24.93, 50.98, 96, 12, "fault"),
        DatasetSpec("style-a", -24.96, 48.93, 120, 14, "vel"),
        DatasetSpec("style-b", -23.76, 46.01, 120, 14, "vel"),
    )
}


def get_dataset(name: str) -> DatasetSpec:
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(f"unknown OpenFWI dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[key]
