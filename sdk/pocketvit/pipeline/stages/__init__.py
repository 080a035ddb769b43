"""Stage factories of the builds: each returns the function a StageRunner calls with the stage folder."""
