"""The D'Kitty tasks themselves (ace_rl.suites.dkitty has the ids, the ROBEL facts they follow and their
registration): the shared environment, Stand, Orient and Walk."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from ace_rl.suites.dkitty import SUCCESS_KEY

FRAME_SKIP = 40
SETTLE_STEPS = 100
"""MuJoCo steps of settling after the reset's first 40 (one action's worth), Stand only."""

ASSETS = Path(__file__).parent / "robel_assets"
STAND_MODEL = ASSETS / "dkitty" / "assets" / "dkitty_stand-v0.xml"
ORIENT_MODEL = ASSETS / "dkitty" / "assets" / "dkitty_orient-v0.xml"
WALK_MODEL = ASSETS / "dkitty" / "assets" / "dkitty_walk-v0.xml"

TORSO_QPOS = slice(0, 6)  # x, y, z slides, then x, y, z hinges (rxyz Euler angles)
JOINT_QPOS = slice(6, 18)
JOINT_COUNT = 12

# Per leg (front right, front left, back left, back right): hip abduction, hip, knee. ROBEL keeps these as float32,
# which decides the action mapping's rounding.
JOINT_RANGES = np.array(
    [(-0.5, 0.279), (0.0, np.pi / 2), (-2.0, 0.0)]
    + [(-0.279, 0.5), (0.0, np.pi / 2), (-2.0, 0.0)] * 2
    + [(-0.5, 0.279), (0.0, np.pi / 2), (-2.0, 0.0)],
    dtype=np.float32,
)
JOINT_SPEED_RANGE = np.array([(-np.pi, np.pi)] * JOINT_COUNT, dtype=np.float32)
_ACTION_CENTRE = np.mean(JOINT_RANGES, axis=1)
_ACTION_HALF_RANGE = 0.5 * (JOINT_RANGES[:, 1] - JOINT_RANGES[:, 0])

STAND_CROUCH = np.array([0.0, np.pi / 4, -np.pi / 2] * 4)
ORIENT_START_YAW = (-np.pi / 3, np.pi / 3)
ORIENT_TARGET_ANGLE = (2 * np.pi / 3, 4 * np.pi / 3)
WALK_TARGET_DISTANCE = (1.0, 2.0)
WALK_TARGET_ANGLE = (-np.pi / 3, np.pi / 3)

_EULER_EPSILON = np.finfo(float).eps * 4.0


def rxyz_matrix(angles: np.ndarray) -> np.ndarray:
    """The rotation of rotating-frame Euler angles x, y, z (R = Rx Ry Rz), the convention of the torso's hinges,
    computed in the operation order that transforms3d's ``euler2mat(..., axes="rxyz")`` uses."""
    first, second, third = (-float(angle) for angle in angles[::-1])
    s1, s2, s3 = math.sin(first), math.sin(second), math.sin(third)
    c1, c2, c3 = math.cos(first), math.cos(second), math.cos(third)
    cc, cs, sc, ss = c1 * c3, c1 * s3, s1 * c3, s1 * s3
    return np.array(
        [
            [c2 * c1, c2 * s1, -s2],
            [s2 * cs - sc, s2 * ss + cc, c2 * s3],
            [s2 * cc + ss, s2 * sc - cs, c2 * c3],
        ]
    )


def rxyz_angles(matrix: np.ndarray) -> np.ndarray:
    """The rxyz Euler angles of a rotation matrix (`rxyz_matrix`'s inverse, angles in (-pi, pi]); the torso's
    observed angles are its joint angles passed through the matrix and back, as ROBEL's tracker does."""
    cos_y = math.sqrt(matrix[2, 2] * matrix[2, 2] + matrix[1, 2] * matrix[1, 2])
    if cos_y > _EULER_EPSILON:
        about_x = math.atan2(matrix[1, 2], matrix[2, 2])
        about_z = math.atan2(matrix[0, 1], matrix[0, 0])
    else:  # gimbal lock: the turns about x and z are one, all of it put on z
        about_x = 0.0
        about_z = math.atan2(-matrix[1, 0], matrix[1, 1])
    about_y = math.atan2(-matrix[0, 2], cos_y)
    return np.array([-about_x, -about_y, -about_z])


def joint_targets(action: np.ndarray, current: np.ndarray, step_seconds: float) -> np.ndarray:
    """Position targets of a [-1, 1] action: mapped to the joint ranges, clipped to them, and limited to pi rad/s
    from the ``current`` joint positions over one step (ROBEL's position control)."""
    action = np.clip(action, -1.0, 1.0)
    target = np.clip(_ACTION_CENTRE + action * _ACTION_HALF_RANGE, JOINT_RANGES[:, 0], JOINT_RANGES[:, 1])
    return _speed_limited(target, current, step_seconds)


def _speed_limited(target: np.ndarray, current: np.ndarray, step_seconds: float) -> np.ndarray:
    speed = np.clip((target - current) / step_seconds, JOINT_SPEED_RANGE[:, 0], JOINT_SPEED_RANGE[:, 1])
    return current + speed * step_seconds


class DKittyEnv(gym.Env[np.ndarray, np.ndarray]):
    """What the D'Kitty tasks share: the model, position control, the torso's pose and uprightness, rendering."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 - gymnasium.Env types it as an instance variable: ClassVar fails mypy
    render_size = 480

    upright_threshold: float
    upright_reward = 2
    falling_reward: int
    """Times (uprightness < threshold): an int as in ROBEL, so that not falling adds 0, never -0.0."""

    def __init__(self, model_path: Path, observation_size: int, render_mode: str | None = None) -> None:
        self.model = mujoco.MjModel.from_xml_path(str(model_path))
        self.data = mujoco.MjData(self.model)
        self.step_seconds = self.model.opt.timestep * FRAME_SKIP
        self.metadata = {**self.metadata, "render_fps": 1.0 / self.step_seconds}
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(JOINT_COUNT,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(observation_size,), dtype=np.float64)
        self.render_mode = render_mode
        self._renderer: Any = None
        self.last_action: np.ndarray = np.zeros(JOINT_COUNT, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        mujoco.mj_forward(self.model, self.data)
        self.last_action = np.zeros(JOINT_COUNT, dtype=np.float32)
        self._reset_task()
        return self._observe(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        # Not cast to float64: a float32 action is mapped in float32, as ROBEL does.
        action = np.clip(np.asarray(action), -1.0, 1.0)
        self._set_targets(joint_targets(action, self.data.qpos[JOINT_QPOS], self.step_seconds))
        resets_before = self._simulator_resets()
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        self.last_action = action
        observation = self._observe()
        if self._simulator_resets() > resets_before:
            # The simulation blew up (the torso's three Euler hinges are singular when it pitches to 90 degrees)
            # and MuJoCo put the model back to its initial state, which would pass for standing: a fall instead.
            return observation, float(self.falling_reward), True, False, {SUCCESS_KEY: False, "unstable": True}
        terms = self._reward_terms()
        reward = float(np.sum(np.array(list(terms.values()), dtype=float)))
        terminated = bool(self.uprightness() < self.upright_threshold)
        info = {SUCCESS_KEY: bool(terms["bonus_big"] > 0.0), "unstable": False, "reward_terms": terms}
        return observation, reward, terminated, False, info

    def _simulator_resets(self) -> int:
        """How often MuJoCo has found a NaN or huge position, velocity or acceleration since the last reset, and
        reset the simulation to the model's initial state."""
        bad = (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQACC)
        return sum(int(self.data.warning[warning].number) for warning in bad)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

            # ROBEL's scene asks for 4x multisampling and 4096-pixel shadow maps: about 2.5 s a frame where OpenGL is
            # software (Mesa), 0.25 s without either. Only the pictures change.
            self.model.vis.quality.offsamples = 0
            self.model.vis.quality.shadowsize = 0
            camera = {"distance": 3.5, "elevation": -55.0, "azimuth": 135.0, "lookat": np.array([0.0, 0.0, 0.0])}
            self._renderer = MujocoRenderer(self.model, self.data, camera, self.render_size, self.render_size)
        return self._renderer.render("rgb_array")

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _set_targets(self, targets: np.ndarray) -> None:
        self.data.ctrl[:JOINT_COUNT] = targets

    def _place(self, joint_pose: np.ndarray, torso_angles: np.ndarray) -> None:
        """The legs at ``joint_pose`` (clipped to the joint ranges) at rest, the torso at the origin turned by
        ``torso_angles``."""
        self.data.qpos[JOINT_QPOS] = np.clip(joint_pose, JOINT_RANGES[:, 0], JOINT_RANGES[:, 1])
        self.data.qvel[JOINT_QPOS] = 0.0
        self.data.qpos[TORSO_QPOS] = np.concatenate([np.zeros(3), torso_angles])
        mujoco.mj_forward(self.model, self.data)

    def torso_rotation(self) -> np.ndarray:
        return rxyz_matrix(self.data.qpos[3:6])

    def uprightness(self) -> float:
        """The z-component of the torso's z-axis: 1 upright, 0 on its side, -1 upside down."""
        return float(self.torso_rotation()[2, 2])

    def _torso_observation(self) -> list[np.ndarray]:
        """Torso position, Euler angles, joint positions, torso velocity and angular velocity, joint velocities,
        the last action and the uprightness: the start of both tasks' observation."""
        qpos, qvel = self.data.qpos, self.data.qvel
        return [
            qpos[0:3],
            rxyz_angles(self.torso_rotation()),
            qpos[JOINT_QPOS],
            qvel[0:3],
            qvel[3:6],
            qvel[JOINT_QPOS],
            self.last_action,
            np.array([self.uprightness()]),
        ]

    def _upright_terms(self) -> dict[str, float]:
        upright = self.uprightness()
        return {
            "upright": self.upright_reward * (upright - self.upright_threshold) / (1 - self.upright_threshold),
            "falling": self.falling_reward * (upright < self.upright_threshold),
        }

    def _centre_distance(self) -> float:
        # ROBEL's `norm(root_pos[:2], axis=1)` slices a batch of one, so the torso height counts too.
        return float(np.linalg.norm(self.data.qpos[0:3]))

    def _reset_task(self) -> None:
        raise NotImplementedError

    def _observe(self) -> np.ndarray:
        raise NotImplementedError

    def _reward_terms(self) -> dict[str, float]:
        raise NotImplementedError


class DKittyStand(DKittyEnv):
    """Stand up from a random joint pose (ROBEL's `DKittyStandRandom-v0`); ``fixed=True``: from a crouch."""

    upright_threshold = 0.0
    falling_reward = -100

    def __init__(self, fixed: bool = False, render_mode: str | None = None) -> None:
        super().__init__(STAND_MODEL, observation_size=61, render_mode=render_mode)
        self.fixed = fixed

    def _reset_task(self) -> None:
        if self.fixed:
            pose = STAND_CROUCH.copy()
        else:
            pose = self.np_random.uniform(low=JOINT_RANGES[:, 0], high=JOINT_RANGES[:, 1])
        self._place(pose, np.zeros(3))
        # Let it settle onto the ground with the start pose as target: one action's steps, then 100 more.
        start_targets = np.clip(pose, JOINT_RANGES[:, 0], JOINT_RANGES[:, 1])
        self._set_targets(_speed_limited(start_targets, self.data.qpos[JOINT_QPOS], self.step_seconds))
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP + SETTLE_STEPS)

    def pose_error(self) -> np.ndarray:
        """Target pose (all joints at 0) minus the joint positions."""
        return np.zeros(JOINT_COUNT) - self.data.qpos[JOINT_QPOS]

    def _observe(self) -> np.ndarray:
        return np.concatenate([*self._torso_observation(), self.pose_error()])

    def _reward_terms(self) -> dict[str, float]:
        mean_error = float(np.abs(self.pose_error()).mean())
        upright = self.uprightness()
        return {
            **self._upright_terms(),
            "pose_error_cost": -4 * mean_error,
            "center_distance_cost": -2 * self._centre_distance(),
            "bonus_small": 5 * (mean_error < np.pi / 6) * upright,
            "bonus_big": 10 * float(mean_error < np.pi / 12 and upright > 0.9),
        }


class DKittyOrient(DKittyEnv):
    """Turn in place to face a target (ROBEL's `DKittyOrientRandom-v0`); ``fixed=True``: a target straight
    behind."""

    upright_threshold = 0.9
    falling_reward = -500

    def __init__(self, fixed: bool = False, render_mode: str | None = None) -> None:
        super().__init__(ORIENT_MODEL, observation_size=53, render_mode=render_mode)
        self.fixed = fixed
        self._target_site = self.model.site("target").id
        self._markers = self.model.body("markers").id
        self._facing_marker = self.model.body("current_angle").id
        self._target_marker = self.model.body("target_angle").id

    def _reset_task(self) -> None:
        if self.fixed:
            start_yaw, target_angle = 0.0, np.pi
        else:
            start_yaw = self.np_random.uniform(*ORIENT_START_YAW)
            target_angle = self.np_random.uniform(*ORIENT_TARGET_ANGLE)
        # The target is placed on the model (the site is fixed to the world), its angle measured from the y-axis,
        # the way the D'Kitty faces.
        self.model.site_pos[self._target_site] = [np.cos(target_angle + np.pi / 2), np.sin(target_angle + np.pi / 2), 0]
        self._place(np.zeros(JOINT_COUNT), np.array([0.0, 0.0, start_yaw]))

    def facing(self) -> np.ndarray:
        """The torso's y-axis in the ground plane, the way the D'Kitty faces."""
        return self.torso_rotation()[:2, 1]

    def target_direction(self) -> np.ndarray:
        offset = self.data.site_xpos[self._target_site][:2] - self.data.qpos[0:2]
        return offset / np.linalg.norm(offset + 1e-8)

    def angle_error(self) -> float:
        """The angle between the facing direction and the direction to the target."""
        facing, target = self.facing(), self.target_direction()
        norms = np.linalg.norm(facing) * np.linalg.norm(target)
        cosine = np.dot(facing, target) / (norms if norms != 0 else 1.0)
        return float(np.arccos(np.clip(cosine, -1.0, 1.0)))  # rounding can put the cosine just past +/-1

    def _observe(self) -> np.ndarray:
        facing, target = self.facing(), self.target_direction()
        self._move_markers(facing, target)
        return np.concatenate([*self._torso_observation(), facing, target])

    def _move_markers(self, facing: np.ndarray, target: np.ndarray) -> None:
        """Two arrows above the D'Kitty, for videos: where it faces and where the target is. ROBEL moves them at
        every observation and recomputes the kinematics (mj_forward), which this does too."""
        self.model.body_pos[self._markers][:2] = self.data.qpos[0:2]
        for body, direction in ((self._facing_marker, facing), (self._target_marker, target)):
            half_turn = math.atan2(direction[1], direction[0]) / 2
            self.model.body_quat[body] = [math.cos(half_turn), 0.0, 0.0, math.sin(half_turn)]
        mujoco.mj_forward(self.model, self.data)

    def _reward_terms(self) -> dict[str, float]:
        angle_error = self.angle_error()
        upright = self.uprightness()
        return {
            **self._upright_terms(),
            "alignment_error_cost": -4 * angle_error,
            "center_distance_cost": -4 * self._centre_distance(),
            # ROBEL adds the two conditions as NumPy booleans, which is "or": 5, never 10.
            "bonus_small": 5 * float(angle_error < 0.26 or upright > 0.96),
            "bonus_big": 10 * float(angle_error < 0.087 and upright > 0.96),
        }


class DKittyWalk(DKittyEnv):
    """Walk to a target 1 to 2 m away (ROBEL's `DKittyWalkRandom-v0`); ``fixed=True``: 2 m straight ahead."""

    upright_threshold = 0.9
    upright_reward = 1
    falling_reward = -500

    def __init__(self, fixed: bool = False, render_mode: str | None = None) -> None:
        super().__init__(WALK_MODEL, observation_size=52, render_mode=render_mode)
        self.fixed = fixed
        self._target_site = self.model.site("target").id
        self._heading_site = self.model.site("heading").id

    def _reset_task(self) -> None:
        if self.fixed:
            distance, angle = 2.0, np.pi / 2
        else:
            distance = self.np_random.uniform(*WALK_TARGET_DISTANCE)
            angle = np.pi / 2 + self.np_random.uniform(*WALK_TARGET_ANGLE)
        target = distance * np.array([np.cos(angle), np.sin(angle), 0])
        # Both markers (the target disc and the heading post) go to the target, on the ground, as in ROBEL.
        self.model.site_pos[self._target_site] = target
        self.model.site_pos[self._heading_site] = target
        self._place(np.zeros(JOINT_COUNT), np.zeros(3))

    def heading(self) -> float:
        """The cosine between the torso's facing direction (its y-axis, in the ground plane) and the direction to
        the target."""
        facing = self.torso_rotation()[:2, 1]
        towards = self.data.site_xpos[self._heading_site][:2] - self.data.qpos[0:2]
        norms = np.linalg.norm(facing) * np.linalg.norm(towards)
        return float(np.dot(facing, towards) / (norms if norms != 0 else 1.0))

    def target_offset(self) -> np.ndarray:
        return self.data.site_xpos[self._target_site][:2] - self.data.qpos[0:2]

    def _observe(self) -> np.ndarray:
        return np.concatenate([*self._torso_observation(), [self.heading()], self.target_offset()])

    def _reward_terms(self) -> dict[str, float]:
        distance = float(np.linalg.norm(self.target_offset()))
        heading = self.heading()
        return {
            **self._upright_terms(),
            "target_dist_cost": -4 * distance,
            "heading": 2 * (heading - 0.9) / 0.1,
            "bonus_small": 5 * float(distance < 0.5 or heading > 0.9),
            "bonus_big": 10 * float(distance < 0.5 and heading > 0.9),
        }
