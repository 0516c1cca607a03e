"""Tiny-LM proxy study: real loss curves from tiny byte-level GPTs trained on a laptop CPU.

* :mod:`~bimix_bayes.proxy.entropy`: the BiMix paper's entropy proxies (Shannon, conditional,
  joint, von Neumann entropy of each domain's text) and the mixtures they propose, no training
  needed (``bimix entropy``);
* :mod:`~bimix_bayes.proxy.corpora`: text domains built from package registries
  (``bimix corpora``), from the sources and extractors of :mod:`~bimix_bayes.proxy.sources`;
* :mod:`~bimix_bayes.proxy.tinygpt`: the model (needs the ``proxy`` extra: PyTorch);
* :mod:`~bimix_bayes.proxy.trainer`: one training run on a mixture, per-domain validation loss
  at log-spaced checkpoints (``bimix train``);
* :mod:`~bimix_bayes.proxy.study`: a design of mixtures run in parallel worker processes
  (``bimix study``), written in the package's long loss format;
* :mod:`~bimix_bayes.proxy.verify`: the closed loop that trains the recommendation
  (``bimix verify``).

PyTorch is imported only when a model is trained, so the rest of ``bimix_bayes`` works without
it; install it with ``pip install -e '.[proxy]'``.
"""
