"""Task suites that are not plain Gymnasium ids, one module each.

- `dmc`: the DeepMind Control Suite (`dmc:DOMAIN-TASK`), wrapped as a Gymnasium environment here.
- `meta_world`: Meta-World v3 single tasks with the goal in the observation (`metaworld:TASK`).
- `robotics`: Gymnasium-Robotics (Adroit and Shadow Hand), whose ids are plain Gymnasium ids once the
  package is imported.
- `panda`: panda-gym's arm tasks on PyBullet.
- `dkitty` (ids, registration; no MuJoCo import) and `dkitty_tasks` (the tasks): ROBEL's D'Kitty tasks, ported to MuJoCo 3 and Gymnasium from ROBEL's definitions, with ROBEL's models
  vendored in `robel_assets/` (Apache-2.0; see its NOTICE).

Each module imports its suite's package only when asked to, so that `ace_rl.envs` works without any of them.
"""
