"""The run lifecycle: a TOML config in, a crash-safe run folder out.

:mod:`~langevin_md.run.config` (the schema, plain data), :mod:`~langevin_md.run.choices`
(names a config may select), :mod:`~langevin_md.run.build` (objects built from a config),
:mod:`~langevin_md.run.folder` (the folder format), :mod:`~langevin_md.run.session` (one
session of a run), :mod:`~langevin_md.run.distributed` and
:mod:`~langevin_md.run.state_reporter`. Submodules are imported where used, so that
``import langevin_md.run.folder`` does not build the whole registry.
"""
