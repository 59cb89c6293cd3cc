"""Settings every test package shares."""

from hypothesis import settings

# Property tests judge answers, never speed: a loaded CI machine once took 295 ms for an
# example Hypothesis' default 200 ms deadline then reported as a failure. Tests that set
# their own @settings inherit this.
settings.register_profile("ordinance", deadline=None)
settings.load_profile("ordinance")
