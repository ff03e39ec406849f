"""Environment construction: an id in, a seeded environment with flat float observations out.

Accepted ids:

- a Gymnasium id: `Hopper-v5`, `Humanoid-v5`, ...; with the `robotics` extra also the Adroit hands
  (`AdroitHandDoor-v1`, ...) and Shadow Hand manipulation (`HandManipulateBlockDense-v1`, ...), with the
  `panda` extra the panda-gym arm tasks (`PandaReachJoints-v3`, `PandaPushDense-v3`, ...), and in the base install
  ROBEL's D'Kitty tasks ported to MuJoCo 3 (`DKittyStandRandom-v0`, `DKittyOrientRandom-v0`, ...);
- `dmc:DOMAIN-TASK` for the DeepMind Control Suite (`dmc:walker-run`, `dmc:ball_in_cup-catch`), `dmc` extra;
- `metaworld:TASK` for Meta-World v3 single tasks with the goal observable (`metaworld:assembly-v3`),
  `metaworld` extra;
- `module:EnvName-vN`, Gymnasium's import-on-make form, for any environment a module registers when it is
  imported (`examples.point_reach:PointReach-v0`), and `module:function` for a function (or class) of a module
  that returns the environment; every process that builds it imports the module itself.

Constructor arguments (``env_kwargs``) go to Gymnasium's ``make`` (Gymnasium ids, ``module:`` ids, Panda).
Every environment is checked when it is built: Box actions with finite bounds, Box or Dict observations, a
finite first observation and Gymnasium's five-value ``step``.

Observations are always one flat vector: goal-conditioned Dict observations become the observation followed
by the desired goal, other Dict observations are flattened whole. Tasks with a success signal (Meta-World,
Adroit, Shadow Hand, Fetch, mazes, Panda, D'Kitty) put a boolean `info["success"]` on every step, and `reward="sparse"`
turns their reward into `float(info["success"])`; `has_success(env)` says whether an environment does.
`render_mode="rgb_array"` makes `env.render()` return RGB frames (see ace_rl.video for the OpenGL back-end).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, SupportsFloat, cast

import gymnasium as gym
import numpy as np

from ace_rl.actions import DistractorActions, action_box
from ace_rl.config import REWARDS
from ace_rl.errors import AceRlError
from ace_rl.extras import install_hint, missing_modules
from ace_rl.mujoco_install import mujoco_install_problem
from ace_rl.suites import dkitty, dmc, meta_world, panda, robotics
from ace_rl.trust import DMC_PREFIX, METAWORLD_PREFIX, is_standard_library
from ace_rl.user_code import describe_error

ACCEPTED_FORMS = (
    "a Gymnasium id such as Hopper-v5, dmc:DOMAIN-TASK such as dmc:walker-run, "
    "metaworld:TASK such as metaworld:button-press-v3, or module:EnvName-vN for an environment that a module "
    "registers on import"
)


class EnvError(AceRlError, ValueError):
    """The environment id is unknown, its suite is not installed, or the environment cannot be trained on."""


@dataclass(frozen=True)
class _Package:
    """The Python package behind a task suite, and the ace-rl extra that installs it."""

    suite: str
    module: str
    extra: str
    load: Callable[[], Any]


_DMC = _Package("dm_control", "dm_control", "dmc", dmc.import_suite)
_METAWORLD = _Package("Meta-World", "metaworld", "metaworld", lambda: importlib.import_module("metaworld"))
_ROBOTICS = _Package("Gymnasium-Robotics", "gymnasium_robotics", "robotics", robotics.register)
_PANDA = _Package("panda-gym", "panda_gym", "panda", panda.register)

dkitty.register()  # plain Gymnasium ids; its models ship with ace-rl, so nothing is installed or imported for them


def _require(package: _Package, env_id: str) -> None:
    try:
        package.load()
    except ImportError as error:
        raise EnvError(
            f"environment {env_id!r} needs {package.suite}, which is not installed ({error}); "
            f'install it with: {install_hint(package.extra)} (or "ace-rl[all]" for every suite)'
        ) from None


def _require_whole_mujoco() -> None:
    problem = mujoco_install_problem()
    if problem is not None:
        raise EnvError(problem)


def _unknown(env_id: str, known: list[str], listing_hint: str) -> EnvError:
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; {listing_hint}"
    return EnvError(f"unknown environment {env_id!r} (expected {ACCEPTED_FORMS}){hint}")


@dataclass(frozen=True)
class _PrefixedSuite:
    """A suite whose ids are PREFIX + task name."""

    prefix: str
    suite: str
    package: _Package
    known_names: Callable[[], list[str]]
    listing_hint: str


_PREFIXED_SUITES = (
    _PrefixedSuite(
        DMC_PREFIX,
        "dmc",
        _DMC,
        dmc.known_names,
        'the tasks are listed by `python -c "from dm_control import suite; print(suite.ALL_TASKS)"`',
    ),
    _PrefixedSuite(
        METAWORLD_PREFIX,
        "metaworld",
        _METAWORLD,
        meta_world.known_names,
        'the tasks are listed by `python -c "import metaworld; print(metaworld.MT1.ENV_NAMES)"`',
    ),
)


EnvFactory = Callable[..., gym.Env]


def factory_path(factory: EnvFactory) -> str:
    """``module:qualified_name`` of an environment factory: the ``--env`` that rebuilds it, when it can be
    imported (a lambda, a local function or a script's ``__main__`` function cannot)."""
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', type(factory).__name__)}"


def importable_factory(env_id: str) -> bool:
    """Whether a ``module:NAME`` id can be imported again: not a lambda's, a local function's or a script's."""
    module_name, _, name = env_id.rpartition(":")
    return "<" not in name and module_name != "__main__"


def _importable_attribute(env_id: str) -> tuple[Any, str]:
    """Import the module of a ``module:NAME`` id, as Gymnasium's make would; the module and NAME."""
    module_name, _, name = env_id.rpartition(":")
    if is_standard_library(module_name):
        raise EnvError(
            f"environment {env_id!r}: {module_name!r} is a module of Python's standard library, which defines no "
            "environment; name a module that registers one or defines a factory returning a gymnasium.Env"
        )
    if not importable_factory(env_id):
        raise EnvError(
            f"environment {env_id!r} comes from a factory that cannot be imported (a lambda, a local function or a "
            "script's own function); pass the factory again from Python (ace_rl.train/resume/evaluate(env=...)), "
            "or define it in an importable module"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise EnvError(
            f"environment {env_id!r}: module {module_name!r} does not import ({error}); install its package or put it "
            "on PYTHONPATH"
        ) from None
    except Exception as error:  # a user's module may fail in any way; name it in one line
        raise EnvError(
            f"environment {env_id!r}: importing module {module_name!r} failed ({describe_error(error)})"
        ) from error
    return module, name


def _resolve_module_id(env_id: str) -> tuple[str, str]:
    """("gymnasium", EnvName-vN) once the module of `module:EnvName-vN` has registered it, or ("factory", env_id)
    when NAME is a function (or class) of the module that builds the environment."""
    module, name = _importable_attribute(env_id)
    if name in gym.registry:
        return "gymnasium", name
    if callable(getattr(module, name, None)):
        _check_factory(getattr(module, name), env_id)
        return "factory", env_id
    close = difflib.get_close_matches(name, sorted(gym.registry.keys()), n=3, cutoff=0.75)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise EnvError(
        f"environment {env_id!r}: module {module.__name__!r} imports but neither registers an environment {name!r} "
        f"(gymnasium.register(id={name!r}, ...) on import) nor defines a factory of that name{hint}"
    )


def _check_factory(factory: object, env_id: str) -> None:
    """Before it is called: a factory named by an id is a gymnasium.Env class or a Python function (``def``), not a
    builtin or a function of the standard library that an id could smuggle in."""
    if inspect.isclass(factory):
        if not issubclass(factory, gym.Env):
            raise EnvError(f"environment {env_id!r} names the class {factory.__name__}, which is not a gymnasium.Env")
        return
    defined_in = getattr(factory, "__module__", None) or ""
    if not inspect.isfunction(factory) or is_standard_library(defined_in):
        raise EnvError(
            f"environment {env_id!r} names {type(factory).__name__} {getattr(factory, '__name__', factory)!r}"
            f"{f' of {defined_in}' if defined_in else ''}, not an environment factory; accepted: a gymnasium.Env "
            "class or a Python function of your module that returns one"
        )


def _call_factory(factory: EnvFactory, env_id: str, render_mode: str | None, env_kwargs: dict[str, Any]) -> gym.Env:
    arguments = {**env_kwargs, **({"render_mode": render_mode} if render_mode is not None else {})}
    try:
        env = factory(**arguments)
    except Exception as error:  # a user's factory may fail in any way; name it in one line
        given = f" with {json.dumps(arguments)}" if arguments else ""
        raise EnvError(f"environment factory {env_id!r} failed{given} ({describe_error(error)})") from error
    if not isinstance(env, gym.Env):
        raise EnvError(f"environment factory {env_id!r} returned {type(env).__name__}, not a gymnasium.Env")
    return env


def _needs_mujoco(name: str) -> bool:
    spec = gym.registry.get(name)
    entry_point = "" if spec is None else str(spec.entry_point)
    return "mujoco" in entry_point or robotics.is_robotics_id(name) or dkitty.is_dkitty_id(name)


def _resolve(env_id: str) -> tuple[str, str]:
    """(suite, name) of a known id: ("dmc", "walker-run"), ("metaworld", "assembly-v3"), ("panda", id) or
    ("gymnasium", id) (for `module:EnvName-vN`, the name its module registered)."""
    for prefixed in _PREFIXED_SUITES:
        if env_id.startswith(prefixed.prefix):
            _require_whole_mujoco()  # before the suite imports MuJoCo
            _require(prefixed.package, env_id)
            name = env_id.removeprefix(prefixed.prefix)
            names = prefixed.known_names()
            if name not in names:
                raise _unknown(env_id, [prefixed.prefix + known for known in names], prefixed.listing_hint)
            return prefixed.suite, name
    if panda.is_panda_id(env_id):
        _require(_PANDA, env_id)
        names = panda.known_names()
        if env_id not in names:
            raise _unknown(
                env_id, names, 'the tasks are listed by `python -c "import panda_gym; print(panda_gym.ENV_IDS)"`'
            )
        missing = panda.missing_asset(env_id)
        if missing is not None:
            raise EnvError(f"environment {env_id!r} cannot be built: {missing}")
        return "panda", env_id
    if ":" in env_id:
        suite, name = _resolve_module_id(env_id)
        if suite == "factory":
            return suite, name
    else:
        name = env_id
        if env_id not in gym.registry and robotics.is_robotics_id(env_id):
            _require_whole_mujoco()
            _require(_ROBOTICS, env_id)
        if env_id not in gym.registry:
            raise _unknown(
                env_id,
                sorted(gym.registry.keys()),
                'run `python -c "import gymnasium; gymnasium.pprint_registry()"` for the list',
            )
    if _needs_mujoco(name):
        _require_whole_mujoco()
    return "gymnasium", name


def check_env_id(env_id: str) -> None:
    """Raise EnvError when ``env_id`` is not a known id of an installed suite.

    The message names the accepted forms and the closest known ids, or the extra that installs the suite.
    """
    _resolve(env_id)


def _success_key(suite: str, name: str) -> str | None:
    if suite == "metaworld":
        return "success"
    if suite == "panda":
        return panda.SUCCESS_KEY
    if suite == "gymnasium":
        return dkitty.SUCCESS_KEY if dkitty.is_dkitty_id(name) else robotics.success_key(name)
    return None


def make_env(
    env_id: str,
    reward: str = "dense",
    render_mode: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    factory: EnvFactory | None = None,
    distractor_actions: int = 0,
) -> gym.Env:
    """Build the environment of ``env_id``, with flat observations and Box actions.

    ``reward="sparse"`` replaces the task's reward by ``float(info["success"])``; it needs a task with a
    success signal (see `has_success`). ``render_mode="rgb_array"``: ``env.render()`` returns RGB frames
    (MuJoCo-based suites need an OpenGL back-end chosen first: `ace_rl.video.select_gl_backend`).
    ``env_kwargs`` go to the constructor of a Gymnasium environment or to the factory. ``factory`` (a callable
    returning a gymnasium.Env, called with ``env_kwargs``) builds the environment instead of ``env_id``, which then
    only names it (`factory_path`). ``distractor_actions``: append that many action dimensions the environment
    ignores (ace_rl.actions.DistractorActions). Seed the result once with `seed_env`.
    """
    if reward not in REWARDS:
        raise EnvError(f"unknown reward {reward!r}; accepted: {', '.join(REWARDS)}")
    env_kwargs = dict(env_kwargs or {})
    suite, name = ("factory", env_id) if factory is not None else _resolve(env_id)
    if env_kwargs and suite not in ("gymnasium", "factory"):
        raise EnvError(f"--env-kwargs go to a Gymnasium environment's constructor; {env_id!r} ({suite}) takes none")
    key = _success_key(suite, name)
    if reward == "sparse" and key is None:
        raise EnvError(
            f"environment {env_id!r} reports no success signal, so it has no sparse reward; use the dense "
            "reward, or a task that reports success (Meta-World, Adroit, Shadow Hand, Panda, D'Kitty)"
        )
    env: gym.Env
    if suite == "dmc":
        env = dmc.make(name, render_mode)
    elif suite == "metaworld":
        env = meta_world.make(name, render_mode)
    elif suite == "panda":
        env = panda.make(name, render_mode)
    elif suite == "factory":
        if factory is None:
            module, attribute = _importable_attribute(env_id)
            factory = getattr(module, attribute)
        env = _call_factory(factory, env_id, render_mode, env_kwargs)
    else:
        env = _make_gymnasium(env_id, name, render_mode, env_kwargs)
    _check_spaces(env, env_id)
    env = _flatten_observations(env)
    if key is not None:
        env = SuccessSignal(env, key, sparse=reward == "sparse")
    if distractor_actions:
        env = DistractorActions(env, distractor_actions)
    return env


def _make_gymnasium(env_id: str, name: str, render_mode: str | None, env_kwargs: dict[str, Any]) -> gym.Env:
    arguments = {**env_kwargs, **({"render_mode": render_mode} if render_mode is not None else {})}
    try:
        return gym.make(name, **arguments)
    except gym.error.DependencyNotInstalled as error:
        raise EnvError(f"environment {env_id!r} needs a package that is not installed: {error}") from None
    except Exception as error:  # a user's constructor may fail or refuse its arguments in any way
        if env_kwargs:
            raise EnvError(
                f"environment {env_id!r} rejects the constructor arguments {json.dumps(env_kwargs)} "
                f"({describe_error(error)})"
            ) from error
        raise EnvError(f"environment {env_id!r} could not be built ({describe_error(error)})") from error


def _check_spaces(env: gym.Env, env_id: str) -> None:
    """Box actions with finite bounds, Box or Dict observations; anything else closes the env and is refused."""
    problem = None
    if not isinstance(env.action_space, gym.spaces.Box):
        problem = f"has {type(env.action_space).__name__} actions; ACE needs continuous (Box) actions"
    elif not (np.all(np.isfinite(env.action_space.low)) and np.all(np.isfinite(env.action_space.high))):
        problem = "has unbounded actions; ACE needs finite action bounds (a Box with finite low and high)"
    elif not np.all(env.action_space.low < env.action_space.high):
        low, high = env.action_space.low, env.action_space.high
        index = int(np.flatnonzero(~(low < high))[0])
        problem = (
            f"has action bounds low {low[index]:g} and high {high[index]:g} in dimension {index}; every action "
            "dimension needs low < high"
        )
    elif not isinstance(env.observation_space, (gym.spaces.Box, gym.spaces.Dict)):
        problem = f"has {type(env.observation_space).__name__} observations; accepted: Box, or Dict (flattened)"
    elif isinstance(env.observation_space, gym.spaces.Box) and np.any(
        env.observation_space.low > env.observation_space.high
    ):
        problem = "has observation bounds with low > high; a Box needs low <= high in every dimension"
    if problem is not None:
        env.close()
        raise EnvError(f"environment {env_id!r} {problem}")


def check_env_behaviour(env: gym.Env, env_id: str) -> None:
    """Reset and step a probe environment once (it is left used): Gymnasium's two-value ``reset`` and
    five-value ``step``, a finite observation of the declared size and a finite reward, else one EnvError line."""

    def call(what: str, function: Callable[[], Any], values: int, form: str) -> tuple:
        try:
            result = function()
        except Exception as error:  # a user's environment may fail in any way
            raise EnvError(f"environment {env_id!r}: {what} failed ({describe_error(error)})") from error
        if not isinstance(result, tuple) or len(result) != values:
            got = f"{len(result)} values" if isinstance(result, tuple) else type(result).__name__
            raise EnvError(f"environment {env_id!r}: {what} returned {got}; Gymnasium's API returns {form}")
        return result

    observation, _ = call("reset(seed=0)", lambda: env.reset(seed=0), 2, "(observation, info)")
    _checked_observation(env, observation, env_id, "reset")
    action = env.action_space.sample()
    observation, reward, *_ = call(
        "step(action)", lambda: env.step(action), 5, "(observation, reward, terminated, truncated, info)"
    )
    _checked_observation(env, observation, env_id, "a step")
    if not (np.ndim(reward) == 0 and math.isfinite(float(reward))):
        raise EnvError(f"environment {env_id!r}: step returned the reward {reward!r}; a finite number is needed")


def _non_finite(values: np.ndarray) -> str:
    """Where ``values`` (flat) are NaN or infinite, in a few words: ``nan at index 1 of 3``."""
    values = values.ravel()
    indices = np.flatnonzero(~np.isfinite(values))
    shown = ", ".join(str(index) for index in indices[:3]) + (", ..." if indices.size > 3 else "")
    return f"{values[indices[0]]} at index {shown} of {values.size}"


def _raised_by_ace_rl(error: Exception) -> bool:
    """An error of ace-rl's own wrappers around the environment (a video frame that cannot be written: RunDirError,
    VideoError), which is reported as it is, not as the environment's fault."""
    return type(error).__module__.split(".")[0] == "ace_rl"


def checked_reset(env: gym.Env, env_id: str, when: str) -> np.ndarray:
    """``env.reset()`` in training or evaluation; a fault of the environment is one EnvError line (`checked_step`)."""
    try:
        observation, _ = env.reset()
    except Exception as error:  # a user's environment may fail in any way
        if _raised_by_ace_rl(error):
            raise
        raise EnvError(f"environment {env_id!r}: reset failed {when} ({describe_error(error)})") from error
    return _checked_observation(env, observation, env_id, f"reset {when}")


def checked_step(env: gym.Env, action: Any, env_id: str, when: str) -> tuple[np.ndarray, float, bool, bool, dict]:
    """``env.step(action)`` in training or evaluation, where what it returns is stored or summed. An exception of
    the environment (named with the file and line in its code), an observation that is not finite or not of its
    space's size, or a reward that is not a finite number, is one EnvError line naming the environment and
    ``when`` (``at env step 250``): NaN is blamed on the environment, not on the losses it would poison."""
    try:
        observation, reward, terminated, truncated, info = env.step(action)
    except Exception as error:  # a user's environment may fail in any way
        if _raised_by_ace_rl(error):
            raise
        raise EnvError(f"environment {env_id!r}: step failed {when} ({describe_error(error)})") from error
    observation = _checked_observation(env, observation, env_id, f"a step {when}")
    if not (np.ndim(cast(Any, reward)) == 0 and math.isfinite(float(reward))):
        raise EnvError(f"environment {env_id!r}: step returned the reward {reward!r} {when}; a finite number is needed")
    return observation, float(reward), bool(terminated), bool(truncated), info


def _checked_observation(env: gym.Env, observation: Any, env_id: str, after: str) -> np.ndarray:
    try:
        flat = np.asarray(observation, dtype=np.float64).ravel()
    except (TypeError, ValueError) as error:
        raise EnvError(f"environment {env_id!r}: the observation after {after} is not numbers ({error})") from None
    if flat.size != observation_size(env):
        raise EnvError(
            f"environment {env_id!r}: the observation after {after} has {flat.size} values, its observation space "
            f"{observation_size(env)}"
        )
    if not np.all(np.isfinite(flat)):
        raise EnvError(f"environment {env_id!r}: the observation after {after} is not finite ({_non_finite(flat)})")
    return observation


GOAL_KEYS = ("observation", "desired_goal")  # a goal task's flat observation, in this order (GoalObservation)


def _flatten_observations(env: gym.Env) -> gym.Env:
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict) and all(
        isinstance(space.spaces.get(key), gym.spaces.Box) for key in GOAL_KEYS
    ):
        return GoalObservation(env)
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        return gym.wrappers.FlattenObservation(env)
    return env


class GoalObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """A goal-conditioned Dict observation as one vector: the observation followed by the desired goal.

    The achieved goal is left out: it is part of the observation already (the object's pose, the fingertips).
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        spaces = cast(gym.spaces.Dict, env.observation_space)  # _flatten_observations checked: two Boxes in a Dict
        parts = tuple(cast(gym.spaces.Box, spaces[key]) for key in GOAL_KEYS)
        self.observation_space = gym.spaces.Box(
            np.concatenate([part.low.ravel() for part in parts]),
            np.concatenate([part.high.ravel() for part in parts]),
            dtype=np.result_type(*(part.dtype for part in parts)),
        )

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        flat = np.concatenate([np.ravel(observation[key]) for key in GOAL_KEYS])
        return flat.astype(self.observation_space.dtype, copy=False)


class SuccessSignal(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Puts the task's success flag on every step as a boolean ``info["success"]``.

    The flag is read from ``info[key]`` (``success`` or ``is_success``); with ``sparse=True`` the reward
    becomes ``float(info["success"])``.
    """

    def __init__(self, env: gym.Env, key: str, sparse: bool) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, key=key, sparse=sparse)
        gym.Wrapper.__init__(self, env)
        self.key = key
        self.sparse = sparse

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        success = bool(info.get(self.key, False))
        info = {**info, "success": success}
        if self.sparse:
            reward = float(success)
        return observation, reward, terminated, truncated, info


def observation_layout(env: gym.Env) -> list[dict[str, Any]] | None:
    """How ``env`` (made by `make_env`) flattens a Dict observation: its leaves in order, each as
    ``{"keys": [key, ...], "size": n, "shape": [...], "dtype": "float32"}``, so that a policy file can flatten
    observations, and an exported file take them leaf by leaf, without the environment.
    None for a Box observation, or a Dict with leaves other than Boxes (whose flattening needs the env's spaces)."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, GoalObservation):
            spaces = cast(gym.spaces.Dict, env.env.observation_space)
            return [_leaf([key], cast(gym.spaces.Box, spaces[key])) for key in GOAL_KEYS]
        if isinstance(env, gym.wrappers.FlattenObservation) and isinstance(env.env.observation_space, gym.spaces.Dict):
            return _box_leaves(env.env.observation_space, [])
        env = env.env
    return None


def _leaf(keys: list[str], space: gym.spaces.Box) -> dict[str, Any]:
    shape = [int(length) for length in space.shape]
    return {"keys": keys, "size": int(math.prod(shape)), "shape": shape, "dtype": np.dtype(space.dtype).name}


def _box_leaves(space: gym.spaces.Dict, keys: list[str]) -> list[dict[str, Any]] | None:
    """The Box leaves of a (nested) Dict in the order Gymnasium's flatten takes them; None if a leaf is not a Box."""
    leaves: list[dict[str, Any]] = []
    for key, subspace in space.spaces.items():
        if isinstance(subspace, gym.spaces.Dict):
            inner = _box_leaves(subspace, [*keys, str(key)])
            if inner is None:
                return None
            leaves.extend(inner)
        elif isinstance(subspace, gym.spaces.Box):
            leaves.append(_leaf([*keys, str(key)], subspace))
        else:
            return None
    return leaves


def has_success(env: gym.Env) -> bool:
    """Whether ``env`` (made by `make_env`, possibly wrapped further) puts ``info["success"]`` on every step."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, SuccessSignal):
            return True
        env = env.env
    return False


def episode_steps(env: gym.Env) -> int | None:
    """The number of steps after which an episode of ``env`` is truncated, None when it has no limit."""
    if isinstance(env.unwrapped, dmc.DMControlEnv):
        return env.unwrapped.episode_steps
    spec = env.spec
    return None if spec is None else spec.max_episode_steps


def seed_env(env: gym.Env, seed: int) -> np.ndarray:
    """Seed the environment once (its first reset and its action space); later resets continue its RNG."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    return obs


def random_transitions(env: gym.Env, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` transitions ``(states, actions, rewards)`` of ``env`` under uniformly random actions from its action
    space, seeded with ``seed`` (`seed_env`) and reset at every episode end: the data of a run's first causal fit,
    and the ground truth of the causal weights with distractor actions (docs/algorithm.md)."""
    obs = seed_env(env, seed)
    states, actions, rewards = [], [], []
    for _ in range(count):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        states.append(obs)
        actions.append(action)
        rewards.append(reward)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return np.array(states, dtype=np.float64), np.array(actions, dtype=np.float64), np.array(rewards, dtype=np.float64)


def observation_size(env: gym.Env) -> int:
    return int(math.prod(cast(gym.spaces.Box, env.observation_space).shape))  # make_env's flat Box


@dataclass(frozen=True)
class ExampleEnv:
    """One example id of a suite; the sizes are None when the suite is not installed."""

    env_id: str
    observation_size: int | None = None
    action_size: int | None = None
    episode_steps: int | None = None
    success: bool | None = None
    """Whether the task reports ``info["success"]`` (and so has a sparse reward)."""


@dataclass(frozen=True)
class SuiteInfo:
    """A task suite: how its ids look, whether it is installed, and some of its environments."""

    name: str
    id_form: str
    installed: bool
    extra: str | None
    """The ace-rl extra that installs the suite; None for the suites of the base install."""
    examples: tuple[ExampleEnv, ...]

    @property
    def install_command(self) -> str:
        return "pip install ace-rl" if self.extra is None else install_hint(self.extra)


# name, id form, module that must be importable, extra, example ids
_SUITES = (
    ("gymnasium-mujoco", "Gymnasium id", "mujoco", None, ("Hopper-v5", "HalfCheetah-v5", "Humanoid-v5")),
    ("dm_control", "dmc:DOMAIN-TASK", "dm_control", "dmc", ("dmc:walker-run", "dmc:humanoid-run", "dmc:dog-run")),
    (
        "metaworld",
        "metaworld:TASK",
        "metaworld",
        "metaworld",
        ("metaworld:button-press-v3", "metaworld:pick-place-wall-v3", "metaworld:assembly-v3"),
    ),
    (
        "adroit",
        "AdroitHand*-v1",
        "gymnasium_robotics",
        "robotics",
        ("AdroitHandDoor-v1", "AdroitHandHammer-v1", "AdroitHandPen-v1", "AdroitHandRelocate-v1"),
    ),
    (
        "shadow hand",
        "HandManipulate*-v1",
        "gymnasium_robotics",
        "robotics",
        ("HandManipulateBlockDense-v1", "HandManipulateEggDense-v1", "HandManipulatePenDense-v1"),
    ),
    (
        "panda",
        "Panda*-v3",
        "panda_gym",
        "panda",
        ("PandaReachJoints-v3", "PandaReachJointsDense-v3", "PandaPush-v3", "PandaPickAndPlace-v3"),
    ),
    ("robel d'kitty", "DKitty*-v0", "mujoco", None, dkitty.ENV_IDS),
)


def _is_importable(module: str) -> bool:
    return not missing_modules(module)


def _describe(env_id: str) -> ExampleEnv:
    try:
        env = make_env(env_id)
    except (EnvError, ImportError):
        return ExampleEnv(env_id)
    try:
        return ExampleEnv(
            env_id, observation_size(env), int(action_box(env).shape[0]), episode_steps(env), has_success(env)
        )
    finally:
        env.close()


def list_suites() -> list[SuiteInfo]:
    """Every supported suite, with example ids and, for the installed suites, their sizes (built on the spot)."""
    _require_whole_mujoco()
    suites = []
    for name, id_form, module, extra, example_ids in _SUITES:
        installed = _is_importable(module)
        examples = tuple(_describe(env_id) if installed else ExampleEnv(env_id) for env_id in example_ids)
        suites.append(SuiteInfo(name, id_form, installed, extra, examples))
    return suites


def format_suites(suites: list[SuiteInfo]) -> str:
    """A table of the suites, one row per example id, and how to install the missing ones."""

    def number(value: int | None) -> str:
        return "-" if value is None else str(value)

    def flag(value: bool | None) -> str:
        return "-" if value is None else ("yes" if value else "no")

    header = ("suite", "id form", "installed", "extra", "example id", "obs", "act", "steps", "success")
    rows = []
    for suite in suites:
        for index, example in enumerate(suite.examples):
            first = index == 0
            rows.append(
                (
                    suite.name if first else "",
                    suite.id_form if first else "",
                    flag(suite.installed) if first else "",
                    (f"[{suite.extra}]" if suite.extra else "(base)") if first else "",
                    example.env_id,
                    number(example.observation_size),
                    number(example.action_size),
                    number(example.episode_steps),
                    flag(example.success),
                )
            )
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    right_aligned = {5, 6, 7}

    def line(row: tuple[str, ...]) -> str:
        cells = (
            cell.rjust(width) if column in right_aligned else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        )
        return "  ".join(cells).rstrip()

    lines = [line(header), *(line(row) for row in rows)]
    missing = [suite for suite in suites if not suite.installed]
    if missing:
        lines.append("")
        lines.extend(f"{suite.name}: {suite.install_command}" for suite in missing)
        lines.append(f"every suite: {install_hint('all')}")
    return "\n".join(lines)
