"""Target profiles (what each deployment target runs) and resolving ``--target`` into one.

``resolve("ncnn")`` gives a built-in profile, ``resolve("my_npu.toml")`` reads a user's profile file
(:mod:`deconv2sub.targets.profile` documents the fields), and a profile object passes through.
"""

from __future__ import annotations

import os
from typing import Union

from .builtin import ALL_BUGS, BUILTIN
from .profile import KnownBug, ProfileError, TargetProfile, load_profile_file, profile_from_dict

DEFAULT_TARGET = "portable"
TARGET_NAMES = tuple(BUILTIN)


def resolve(target: Union[str, TargetProfile, None]) -> TargetProfile:
    """The profile for ``target``: a built-in name, a path to a ``.toml`` file, or a profile."""
    if target is None:
        return BUILTIN[DEFAULT_TARGET]
    if isinstance(target, TargetProfile):
        return target
    if target in BUILTIN:
        return BUILTIN[target]
    if target.endswith(".toml") or os.sep in target or os.path.exists(target):
        return load_profile_file(target)
    raise ProfileError(
        f"unknown target {target!r} (choose from: {', '.join(TARGET_NAMES)}, "
        "or a .toml profile file)"
    )


__all__ = [
    "ALL_BUGS",
    "BUILTIN",
    "DEFAULT_TARGET",
    "KnownBug",
    "ProfileError",
    "TARGET_NAMES",
    "TargetProfile",
    "load_profile_file",
    "profile_from_dict",
    "resolve",
]
