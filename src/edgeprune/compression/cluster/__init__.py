"""Paper 2: hardware-aware cluster pruning vs filter pruning.

* :mod:`~edgeprune.compression.cluster.importance` -- θ_MW filter importance (Eq. 3);
* :mod:`~edgeprune.compression.cluster.surgery` -- physical filter removal with every coupled layer;
* :mod:`~edgeprune.compression.cluster.cost` -- parameters and MACs;
* :mod:`~edgeprune.compression.cluster.period` -- period of latency minima / accuracy maxima, P =
LCM;
* :mod:`~edgeprune.compression.cluster.algorithm` -- filter pruning order and Algorithm 1
(clusters);
* :mod:`~edgeprune.compression.cluster.sweep`, :mod:`~edgeprune.compression.cluster.whole` -- the
experiments;
* :mod:`~edgeprune.compression.cluster.convert`, :mod:`~edgeprune.compression.cluster.measure` --
artifacts, mAP,
  timing, application FPS; :mod:`~edgeprune.compression.cluster.report` -- tables and figures;
* :mod:`~edgeprune.compression.cluster.settings` -- the ``paper2:`` config section.
"""
