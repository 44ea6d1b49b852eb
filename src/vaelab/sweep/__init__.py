"""``vaelab sweep``: many small runs over a search space, scheduled by Ray Tune.

:mod:`vaelab.sweep.space` parses and checks the search space (no Ray needed);
:mod:`vaelab.sweep.trial` trains and scores one trial into an ordinary run directory;
:mod:`vaelab.sweep.records` keeps the sweep's settings and its table of trials;
:mod:`vaelab.sweep.page` writes its ``report.html`` from the rows;
:mod:`vaelab.sweep.driver` runs the trials on Ray Tune, locally or on a cluster. Ray and
Optuna are imported only by the driver, when a sweep starts; torch only by the trials
(:mod:`vaelab.sweep.trial`, in Ray's workers), never by the driver.
"""
