"""The data layer: the canonical table of runs and observations and everything that makes one.

* :mod:`~bimix_bayes.data.table`: :class:`MixtureData` (validated runs, mixtures, observations),
  its errors and warnings;
* :mod:`~bimix_bayes.data.validate`: the one-pass validation behind it;
* :mod:`~bimix_bayes.data.labels`: the labels shared by every layer and the long-table builder;
* :mod:`~bimix_bayes.data.loaders`: CSV/Parquet loss logs (long or wide), on
  :mod:`~bimix_bayes.data.columns` (reading a table, detecting its columns);
* :mod:`~bimix_bayes.data.mixture_files`: mixture files, and the runs' mixtures in a log;
* :mod:`~bimix_bayes.data.public_loaders` (and its short name :mod:`~bimix_bayes.data.public`):
  the public datasets (SlimPajama, Ye et al., RegMix), read from a path, never shipped;
* :mod:`~bimix_bayes.data.simulate`: data simulated from the law;
* :mod:`~bimix_bayes.data.embedded`: the embedded tiny-LM study (the default data);
* :mod:`~bimix_bayes.data.files`: atomic writes.

Nothing here imports a layer above it.
"""
