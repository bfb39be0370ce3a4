"""Lightning glue: thin LightningModules, optimisers/schedules, the Trainer and run-folder convention.

The only package (with ``logah.data``) that imports Lightning. Public pieces:
``CausalLM`` / ``ImageClassifier`` (:mod:`logah.lit.target_module`), ``configure_optimizers``
(:mod:`logah.lit.optim`), ``build_trainer`` (:mod:`logah.lit.trainer`), ``run_dir`` /
``check_run`` / ``start_run`` (:mod:`logah.lit.rundir`) and ``finetune`` (:mod:`logah.lit.finetune`).
Import the submodules directly; this package file stays import-light.
"""
