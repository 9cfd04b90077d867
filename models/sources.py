"""Where each data format comes from: citation, licence and the unit of every channel.

Read by the loaders (units travel with a :class:`~models.data.Dataset` into the manifest) and
by the model card (provenance and licence of the training data).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A public data set: how to cite it and under which terms it may be used.

    ``redistributable`` False: nothing that reproduces readings (a plot of the series) goes
    into an artifact; figures derived from them (errors, loss) do.
    """

    citation: str
    licence: str
    redistributable: bool = True


IMS = Source(
    'J. Lee, H. Qiu, G. Yu, J. Lin and Rexnord Technical Services (2007), "Bearing Data Set", '
    "IMS, University of Cincinnati, NASA Ames Prognostics Data Repository",
    "NASA Prognostics Data Repository, public; a copy of the per-snapshot levels is shipped "
    "in models/data/ims with its attribution",
)
CMAPSS = Source(
    'A. Saxena, K. Goebel, D. Simon, N. Eklund (2008), "Damage Propagation Modeling for '
    'Aircraft Engine Run-to-Failure Simulation", PHM08; NASA Ames Prognostics Data Repository',
    "NASA, public; read from ../shared/data/cmapss, not shipped",
)
SKAB = Source(
    'I. Katser and V. Kozitsin (2020), "Skoltech Anomaly Benchmark (SKAB)", Kaggle, '
    "doi:10.34740/KAGGLE/DSV/1693952; github.com/waico/SKAB (v0.9)",
    "GPL-3.0. The data is read from ../shared/data/skab-dev at training time and never "
    "copied into the project: this artifact holds weights, scaling statistics, error "
    "figures, an error histogram and the loss curves; its probe sequence is synthetic and no "
    "plot of the readings is included",
    redistributable=False,
)
NAB = Source(
    "Lavin & Ahmad (2015), arXiv:1510.03336; github.com/numenta/NAB",
    "MIT",
)
SOURCES: dict[str, Source] = {
    "ims": IMS,
    "ims-multi": IMS,
    "cmapss": CMAPSS,
    "skab": SKAB,
    "nab": NAB,
}

#: IMS levels are mean absolute acceleration per snapshot.
IMS_UNIT = "g"
#: C-MAPSS FD001 sensors (Saxena et al. 2008, table 2), by column name.
CMAPSS_UNITS = {
    "s1": "°R", "s2": "°R", "s3": "°R", "s4": "°R", "s5": "psia", "s6": "psia", "s7": "psia",
    "s8": "rpm", "s9": "rpm", "s10": "", "s11": "psia", "s12": "pps/psi", "s13": "rpm",
    "s14": "rpm", "s15": "", "s16": "", "s17": "", "s18": "rpm", "s19": "rpm",
    "s20": "lbm/s", "s21": "lbm/s", "setting1": "", "setting2": "", "setting3": "",
}  # fmt: skip
#: SKAB pump testbed sensors, by column name (SKAB's README).
SKAB_UNITS = {
    "Accelerometer1RMS": "g",
    "Accelerometer2RMS": "g",
    "Current": "A",
    "Pressure": "bar",
    "Temperature": "°C",
    "Thermocouple": "°C",
    "Voltage": "V",
    "Volume Flow RateRMS": "L/min",
}
#: Label columns of SKAB files: never model inputs.
SKAB_LABELS = ("anomaly", "changepoint")
