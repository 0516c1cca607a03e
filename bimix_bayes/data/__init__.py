"""The data layer: the canonical table of runs and observations and everything that makes one.

* :mod:`~bimix_bayes.data.table`: :class:`MixtureData` (validated runs, mixtures, observations),
  its errors and warnings, and the labels shared by every layer;
* :mod:`~bimix_bayes.data.loaders`: CSV/Parquet loss logs (long or wide) and mixture files;
* :mod:`~bimix_bayes.data.public_loaders`, :mod:`~bimix_bayes.data.public`: the public
  datasets (Ye et al., RegMix, SlimPajama), read from a path, never shipped;
* :mod:`~bimix_bayes.data.simulate`: data simulated from the law;
* :mod:`~bimix_bayes.data.embedded`: the embedded tiny-LM study (the default data);
* :mod:`~bimix_bayes.data.files`: atomic writes.

Nothing here imports a layer above it.
"""
