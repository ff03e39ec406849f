"""A task module that imports on the machine that plans a sweep but not in a Ray worker, as on a node that lacks
one of the task's dependencies: in a worker process (Ray's default_worker.py) importing it fails."""

import sys

if any(arg.endswith("default_worker.py") for arg in sys.argv):
    raise ModuleNotFoundError("No module named 'robot_sdk'")

import gymnasium as gym

gym.register("DriverOnlyReach-v0", entry_point="examples.point_reach:PointReach", max_episode_steps=50)
