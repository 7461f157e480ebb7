"""Pure camera geometry (pose files, trajectories, Plücker rays, epipolar geometry). Filled by the Camera issue."""
