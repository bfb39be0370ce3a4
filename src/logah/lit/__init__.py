"""Lightning glue: thin LightningModules, optimisers/schedules, the Trainer and run-folder convention.

The only package (with ``logah.data``) that imports Lightning. Public pieces:
``CausalLM`` / ``ImageClassifier`` (:mod:`logah.lit.target_module`), ``GHNModule``
(:mod:`logah.lit.ghn_module`), ``configure_optimizers`` (:mod:`logah.lit.optim`), ``build_trainer``
(:mod:`logah.lit.trainer`), ``run_dir`` / ``check_run`` / ``start_run`` (:mod:`logah.lit.rundir`),
the run skeleton both commands share (``Run``, :mod:`logah.lit.run`) and the two runs themselves:
``finetune`` (:mod:`logah.lit.finetune`) and ``train_ghn`` (:mod:`logah.lit.train_ghn`).
Import the submodules directly; this package file stays import-light.
"""
