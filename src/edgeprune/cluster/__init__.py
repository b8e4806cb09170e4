"""Paper 2: hardware-aware cluster pruning vs filter pruning.

* :mod:`~edgeprune.cluster.importance` -- θ_MW filter importance (Eq. 3);
* :mod:`~edgeprune.cluster.surgery` -- physical filter removal with every coupled layer;
* :mod:`~edgeprune.cluster.cost` -- parameters and MACs;
* :mod:`~edgeprune.cluster.period` -- period of latency minima / accuracy maxima, P = LCM;
* :mod:`~edgeprune.cluster.algorithm` -- filter pruning order and Algorithm 1 (clusters);
* :mod:`~edgeprune.cluster.sweep`, :mod:`~edgeprune.cluster.whole` -- the experiments;
* :mod:`~edgeprune.cluster.convert`, :mod:`~edgeprune.cluster.measure` -- artifacts, mAP,
  timing, application FPS; :mod:`~edgeprune.cluster.report` -- tables and figures;
* :mod:`~edgeprune.cluster.settings` -- the ``paper2:`` config section.
"""
